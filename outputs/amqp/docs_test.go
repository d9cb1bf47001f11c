package amqp

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReferenceConfig: the #output.amqp block of connbeat.reference.yml
// names every option, and uncommented it is a valid configuration whose
// values are the defaults (apart from its example hosts and credentials).
func TestReferenceConfig(t *testing.T) {
	raw, err := os.ReadFile("../../connbeat.reference.yml")
	require.NoError(t, err)
	text := string(raw)
	start := strings.Index(text, "#output.amqp:\n")
	require.GreaterOrEqual(t, start, 0, "no #output.amqp block")
	var block []string
	for _, line := range strings.Split(text[start+len("#output.amqp:\n"):], "\n") {
		if !strings.HasPrefix(line, "  #") {
			break
		}
		block = append(block, line)
	}
	var yaml strings.Builder
	for _, line := range block {
		l := strings.TrimPrefix(line, "  #")
		if strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "   ") {
			continue // a comment sentence ("  # text")
		}
		yaml.WriteString(l + "\n")
	}
	keyRe := regexp.MustCompile(`(?m)^([a-z_]+)[.:]`)
	documented := map[string]bool{}
	for _, m := range keyRe.FindAllStringSubmatch(yaml.String(), -1) {
		documented[m[1]] = true
	}
	typ := reflect.TypeOf(amqpConfig{})
	for i := 0; i < typ.NumField(); i++ {
		key := strings.Split(typ.Field(i).Tag.Get("config"), ",")[0]
		if key == "" || key == "queue" { // queue: libbeat's own, documented in its section
			continue
		}
		assert.True(t, documented[key], "output.amqp.%s is not in connbeat.reference.yml", key)
	}

	// The example certificate files do not exist here.
	parsable := regexp.MustCompile(`(?m)^ssl\.(certificate_authorities|certificate|key):.*$`).ReplaceAllString(yaml.String(), "")
	t.Setenv("AMQP_PASSWORD", "from-the-keystore")
	c, _, err := newTestClient(t, parsable)
	require.NoError(t, err, yaml.String())
	want := defaultConfig()
	want.Hosts, want.Username, want.Password, want.VHost = []string{"amqp://rabbit.example.com:5672/"}, "connbeat", "from-the-keystore", "/"
	want.TLS, want.Codec = c.cfg.TLS, c.cfg.Codec
	assert.Equal(t, want, *c.cfg, "the reference shows the defaults")
}
