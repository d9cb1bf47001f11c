package redact

import (
	"regexp"
	"strings"
)

// text masks what a credential looks like wherever it appears in an
// argument: URL passwords, authorization headers, key=value and "key":
// "value" pairs with a secret-looking key, private key blocks and the
// token formats secret scanners look for.
func text(s string) string {
	if s == "" || s == Mask {
		return s
	}
	s = urlPasswords(s)
	s = maskGroup(headerRe, s)
	s = maskGroup(cookieRe, s)
	s = maskGroup(pairRe, s)
	s = privateKeyRe.ReplaceAllString(s, Mask)
	for _, re := range tokenRes {
		s = maskGroup(re, s)
	}
	return s
}

// maskGroup replaces, in every match of re in s, the first submatch that
// matched (the whole match when none did) by Mask.
func maskGroup(re *regexp.Regexp, s string) string {
	ms := re.FindAllStringSubmatchIndex(s, -1)
	if ms == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range ms {
		from, to := m[0], m[1]
		for g := 2; g+1 < len(m); g += 2 {
			if m[g] >= 0 {
				from, to = m[g], m[g+1]
				break
			}
		}
		if from < last || from == to || s[from:to] == Mask {
			continue
		}
		b.WriteString(s[last:from])
		b.WriteString(Mask)
		last = to
	}
	b.WriteString(s[last:])
	return b.String()
}

// urlRe finds scheme://user:password@ up to the end of the authority.
// The password runs to the last @ before the host: users write / and @
// in passwords without percent-encoding them.
var urlRe = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:`)

func urlPasswords(s string) string {
	for start := 0; start < len(s); {
		loc := urlRe.FindStringIndex(s[start:])
		if loc == nil {
			return s
		}
		from := start + loc[1] // just after user:
		end := from + strings.IndexAny(s[from:]+" ", " \t\n'\"")
		at := strings.LastIndexByte(s[from:end], '@')
		if at < 0 {
			start = from
			continue
		}
		pass := s[from : from+at]
		// host:8080/path@x is a port and a path, not a password.
		if port := strings.TrimLeft(pass, "0123456789"); len(pass)-len(port) > 0 && len(pass)-len(port) <= 5 && (port == "" || port[0] == '/') {
			start = from
			continue
		}
		if pass != "" && pass != Mask {
			s = s[:from] + Mask + s[from+at:]
		}
		start = from + len(Mask) + 1
	}
	return s
}

var (
	// Authorization: Bearer x, X-Api-Key: x, Private-Token: x, ...
	headerRe = regexp.MustCompile(`(?i)\b(?:proxy-)?(?:authorization|x-api-key|api-key|apikey|x-auth-token|x-access-token|private-token|x-vault-token|x-gitlab-token|x-amz-security-token|x-goog-api-key|ocp-apim-subscription-key|x-csrf-token)["']?\s*[:=]\s*["']?(?:(?:bearer|basic|token|digest|negotiate|bot|apikey|sso-key|splunk|gcp|aws4-hmac-sha256)\s+)?([^\s"',;]+)`)
	// Cookie: a=b; c=d  -- everything after the header name.
	cookieRe = regexp.MustCompile(`(?i)\b(?:set-)?cookie["']?\s*:\s*([^"'\n]+)`)
	// key=value, key: value, "key": "value", key='value' with a secret
	// key; the value ends at a space, quote, comma, semicolon, & or }.
	pairRe       = regexp.MustCompile(`(?i)(?:^|[^A-Za-z0-9_])["']?[A-Za-z0-9_.-]*?(?:password|passwd|passphrase|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|secret[-_]?key|client[-_]?secret|account[-_]?key|auth[-_]?key|credentials?|sharedaccesskey|x-amz-signature|x-amz-credential|sig)["']?\s*[:=]\s*(?:"([^"]*)"|'([^']*)'|([^\s"',;&}\]]+))`)
	privateKeyRe = regexp.MustCompile(`-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?(-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|$)`)
)

// tokenRes are credential formats recognisable without context (the
// prefixes of GitHub's, GitLab's, Slack's, Stripe's, AWS's ... tokens);
// group 1, when present, is the part masked.
var tokenRes = []*regexp.Regexp{
	regexp.MustCompile(`\b((?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16})\b`), // AWS access key id
	regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{36,255})\b`),                                     // GitHub
	regexp.MustCompile(`\b(github_pat_[A-Za-z0-9_]{22,255})\b`),                                   // GitHub fine-grained
	regexp.MustCompile(`\b(glpat-[A-Za-z0-9_-]{20,})`),                                            // GitLab personal
	regexp.MustCompile(`\b(gl(?:dt|rt|ptt|ft|imt|agent|oas|cbt|soat)-[A-Za-z0-9_-]{20,})`),        // GitLab other
	regexp.MustCompile(`\b(xox[abposr]-[A-Za-z0-9-]{10,})`),                                       // Slack
	regexp.MustCompile(`hooks\.slack\.com/(?:services|workflows)/([A-Za-z0-9/_-]+)`),              // Slack webhook
	regexp.MustCompile(`discord(?:app)?\.com/api/webhooks/\d+/([A-Za-z0-9_-]+)`),                  // Discord webhook
	regexp.MustCompile(`\b((?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,})\b`),                          // Stripe
	regexp.MustCompile(`\b(AIza[0-9A-Za-z_-]{35})`),                                               // Google API key
	regexp.MustCompile(`\b(ya29\.[0-9A-Za-z_-]{20,})`),                                            // Google OAuth access token
	regexp.MustCompile(`\b(eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)`),          // JWT
	regexp.MustCompile(`\b(npm_[A-Za-z0-9]{36})\b`),                                               // npm
	regexp.MustCompile(`\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})`),                              // PyPI
	regexp.MustCompile(`\b(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})\b`),                          // SendGrid
	regexp.MustCompile(`\b(sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[A-Za-z0-9_-]{20,})`),          // OpenAI, Anthropic
	regexp.MustCompile(`\b(hv[sbr]\.[A-Za-z0-9_-]{24,})`),                                         // HashiCorp Vault
	regexp.MustCompile(`\b(dop_v1_[a-f0-9]{64})\b`),                                               // DigitalOcean
	regexp.MustCompile(`\b(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b`),                                // Shopify
	regexp.MustCompile(`\b(dckr_pat_[A-Za-z0-9_-]{20,})`),                                         // Docker Hub
	regexp.MustCompile(`\b(glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})\b`),                               // Grafana service account
	regexp.MustCompile(`\b(NRAK-[A-Z0-9]{27})\b`),                                                 // New Relic
	regexp.MustCompile(`\b(dapi[a-f0-9]{32}(?:-\d)?)\b`),                                          // Databricks
	regexp.MustCompile(`\b(\d{8,10}:AA[A-Za-z0-9_-]{33})\b`),                                      // Telegram bot
	regexp.MustCompile(`\b(key-[0-9a-zA-Z]{32})\b`),                                               // Mailgun
	regexp.MustCompile(`\b(SK[0-9a-fA-F]{32})\b`),                                                 // Twilio
	regexp.MustCompile(`\b(AccountKey=)?([A-Za-z0-9+/]{86}==)`),                                   // Azure storage key
	regexp.MustCompile(`\b(lin_api_[A-Za-z0-9]{40})\b`),                                           // Linear
	regexp.MustCompile(`\b(pat[A-Za-z0-9]{14}\.[a-f0-9]{64})\b`),                                  // Airtable
	regexp.MustCompile(`\b(ATATT3[A-Za-z0-9_=-]{100,})`),                                          // Atlassian
}
