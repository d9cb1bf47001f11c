package amqp

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"{}", "output.amqp.hosts: at least one amqp:// or amqps:// URL is required"},
		{"hosts: ['http://x']", `output.amqp.hosts.0: "http://x" must be an amqp:// or amqps:// URL`},
		{"hosts: ['amqp://u:hunter2@x:99999999999/%zz']", "output.amqp.hosts.0: not a URL"},
		{"hosts: ['amqp:///vhost']", "has no host"},
		{"hosts: ['amqp://x/?heartbeat=5']", "query parameters are not supported"},
		{"hosts: ['amqp://x']\npassword: p", "output.amqp.password is set but output.amqp.username is empty"},
		{"hosts: ['amqp://x']\nexchange: ''", "output.amqp.exchange must be named when exchange_declare is true"},
		{"hosts: ['amqp://x']\nexchange: amq.topic", "names starting with amq. are reserved"},
		{"hosts: ['amqp://x']\nexchange_type: fanin", "output.amqp.exchange_type must be one of topic, direct, fanout, headers"},
		{"hosts: ['amqp://x']\nrouting_key: ' '", "output.amqp.routing_key must not be empty"},
		{"hosts: ['amqp://x']\nheartbeat: -1s", "output.amqp.heartbeat must not be negative"},
		{"hosts: ['amqp://x']\ntimeout: 0s", "output.amqp.timeout must be positive"},
		{"hosts: ['amqp://x']\nconfirm_timeout: 0s", "output.amqp.confirm_timeout must be positive"},
		{"hosts: ['amqp://x']\nbackoff: {init: 10s, max: 1s}", "output.amqp.backoff: init must be positive and max >= init"},
		{"hosts: ['amqp://x']\nmax_retries: -2", "output.amqp.max_retries must be -1 (retry forever) or >= 0"},
		{"hosts: ['amqp://x']\nbulk_max_size: 0", "output.amqp.bulk_max_size must be positive"},
		{"hosts: ['amqp://x']\nrouting_key: 'a.%{[unclosed'", "output.amqp.routing_key"},
		{"hosts: ['amqp://x']\ncodec.nope: {}", "output.amqp.codec"},
		{"hosts: ['amqp://x']\nroutingkey: a", "unknown option output.amqp.routingkey (known options: "},
		{"hosts: ['amqps://x']\nssl.certificate: /nonexistent.pem\nssl.key: /nonexistent-key.pem", "nonexistent"},
	} {
		_, _, err := newTestClient(t, tc.yaml)
		require.Error(t, err, tc.yaml)
		assert.Contains(t, err.Error(), tc.want, tc.yaml)
		assert.NotContains(t, err.Error(), "hunter2", "a password never shows in an error")
	}

	c, _, err := newTestClient(t, "hosts: ['amqp://a', 'amqps://b:5671/v']\nusername: u\npassword: s3cret")
	require.NoError(t, err)
	want := defaultConfig()
	want.Hosts = []string{"amqp://a", "amqps://b:5671/v"}
	want.Username, want.Password = "u", "s3cret"
	assert.Equal(t, want, *c.cfg)
	assert.Equal(t, 10*time.Second, c.cfg.Heartbeat)
	assert.Equal(t, -1, c.cfg.MaxRetries)
	assert.Equal(t, "amqp([amqp://a amqps://b:5671/v])", c.String())

	// routing_keys is read by libbeat's selector; enabled and queue by libbeat.
	_, _, err = newTestClient(t, "enabled: true\nhosts: ['amqp://a']\nqueue.mem.events: 4096\nrouting_keys: [{routing_key: x, when.equals: {direction: inbound}}]")
	require.NoError(t, err)

	c, _, err = newTestClient(t, "hosts: ['amqp://user:hunter2@a']")
	require.NoError(t, err)
	assert.NotContains(t, c.String(), "hunter2")
}
