// Package http is connbeat's `http` output: it POSTs batches of events
// to one or more URLs and acknowledges a batch only once a server accepted
// it (2xx). Connection errors, 408, 429 and 5xx are retried with backoff,
// honouring Retry-After; a 413 splits the batch in halves; any other 4xx
// drops that batch with one error log.
package http

import (
	"errors"
	"fmt"
	"maps"
	nethttp "net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/transport/httpcommon"

	"github.com/connbeat/connbeat/internal/backoff"
)

// Body formats.
const (
	FormatJSONArray = "json_array"
	FormatNDJSON    = "ndjson"
)

type httpConfig struct {
	Hosts       []string `config:"hosts"`
	LoadBalance bool     `config:"loadbalance"`
	// Path is appended to hosts that have none.
	Format           string            `config:"format"`
	Compression      string            `config:"compression"`
	CompressionLevel int               `config:"compression_level"`
	Method           string            `config:"method"`
	Username         string            `config:"username"`
	Password         string            `config:"password"`
	BearerToken      string            `config:"bearer_token"`
	Headers          map[string]string `config:"headers"`
	BatchSize        int               `config:"batch_size"`
	Backoff          backoff.Config    `config:"backoff"`
	// MaxRetryAfter caps how long a Retry-After header may make us wait.
	MaxRetryAfter time.Duration `config:"max_retry_after"`
	// ErrorBodyBytes is how much of a rejected request's response body
	// the error log quotes.
	ErrorBodyBytes int              `config:"error_body_bytes"`
	Queue          config.Namespace `config:"queue"`

	Transport httpcommon.HTTPTransportSettings `config:",inline"`
}

func defaultConfig() httpConfig {
	tr := httpcommon.DefaultHTTPTransportSettings()
	tr.Timeout = 30 * time.Second
	return httpConfig{
		Format:           FormatJSONArray,
		Compression:      "none",
		CompressionLevel: 5,
		Method:           nethttp.MethodPost,
		BatchSize:        1600,
		Backoff:          backoff.Default(),
		MaxRetryAfter:    5 * time.Minute,
		ErrorBodyBytes:   512,
		Transport:        tr,
	}
}

// Validate checks every value; errors name the key under output.http.
func (c *httpConfig) Validate() error {
	var errs []error
	if len(c.Hosts) == 0 {
		errs = append(errs, errors.New("output.http.hosts: at least one URL is required"))
	}
	for i, h := range c.Hosts {
		u, err := url.Parse(h)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("output.http.hosts.%d: %q is not a URL: %w", i, h, err))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("output.http.hosts.%d: %q must be an http:// or https:// URL", i, h))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("output.http.hosts.%d: %q has no host", i, h))
		case u.User != nil:
			errs = append(errs, fmt.Errorf("output.http.hosts.%d: put credentials in output.http.username/password or bearer_token, not in the URL", i))
		}
	}
	if c.Format != FormatJSONArray && c.Format != FormatNDJSON {
		errs = append(errs, fmt.Errorf("output.http.format must be %s or %s, got %q", FormatJSONArray, FormatNDJSON, c.Format))
	}
	if c.Compression != "none" && c.Compression != "gzip" {
		errs = append(errs, fmt.Errorf("output.http.compression must be none or gzip, got %q", c.Compression))
	}
	if c.CompressionLevel < 1 || c.CompressionLevel > 9 {
		errs = append(errs, fmt.Errorf("output.http.compression_level must be 1..9, got %d", c.CompressionLevel))
	}
	if c.Method != nethttp.MethodPost && c.Method != nethttp.MethodPut {
		errs = append(errs, fmt.Errorf("output.http.method must be POST or PUT, got %q", c.Method))
	}
	if c.BearerToken != "" && (c.Username != "" || c.Password != "") {
		errs = append(errs, errors.New("output.http: set either bearer_token or username/password, not both"))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("output.http.password is set but output.http.username is empty"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Headers)) {
		switch {
		case !validHeaderName(name):
			errs = append(errs, fmt.Errorf("output.http.headers: %q is not a valid header name", name))
		case slices.ContainsFunc(reservedHeaders, func(r string) bool { return strings.EqualFold(r, name) }):
			errs = append(errs, fmt.Errorf("output.http.headers: %s is set by the output itself", name))
		case strings.EqualFold(name, "Authorization") && (c.BearerToken != "" || c.Username != ""):
			errs = append(errs, errors.New("output.http.headers: Authorization conflicts with bearer_token or username/password: set one of them"))
		}
		if !validHeaderValue(c.Headers[name]) {
			// The value is not quoted: it may be a secret.
			errs = append(errs, fmt.Errorf("output.http.headers.%s: the value holds a control character (CR, LF, NUL ...), which HTTP does not allow in a header", name))
		}
	}
	if !validHeaderValue(c.BearerToken) {
		errs = append(errs, errors.New("output.http.bearer_token holds a control character (CR, LF, NUL ...)"))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, fmt.Errorf("output.http.batch_size must be positive, got %d", c.BatchSize))
	}
	errs = append(errs, c.Backoff.Check("output.http.backoff"))
	if c.MaxRetryAfter <= 0 {
		errs = append(errs, fmt.Errorf("output.http.max_retry_after must be positive, got %s", c.MaxRetryAfter))
	}
	if c.Transport.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("output.http.timeout must be positive, got %s", c.Transport.Timeout))
	}
	if c.ErrorBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("output.http.error_body_bytes must not be negative, got %d", c.ErrorBodyBytes))
	}
	return errors.Join(errs...)
}

// reservedHeaders are set by the output (Host by the URL): a configured
// value would be overridden or make the request malformed.
var reservedHeaders = []string{"Content-Encoding", "Content-Length", "Content-Type", "Transfer-Encoding", "Host", "Connection", "Te", "Trailer", "Upgrade"}

// validHeaderValue reports whether s is an RFC 9110 field value: visible
// characters, spaces and tabs, none of CR, LF, NUL or another control
// character (Go refuses such a request, so every batch would fail).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHeaderName reports whether s is an RFC 7230 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c > 126 || c <= 32 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}
