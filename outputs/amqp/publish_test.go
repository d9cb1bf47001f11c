package amqp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	libtesting "github.com/elastic/elastic-agent-libs/testing"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit"
)

// TestPublishRoutesAndConfirms publishes a batch to the real broker: each
// event arrives in the bound queue as a persistent JSON message with the
// routing key formatted from its kind and direction; the event that cannot
// be encoded is dropped and counted once; the batch is ACKed.
func TestPublishRoutesAndConfirms(t *testing.T) {
	q := newConsumer(t, "connbeat", "all", nil, "connbeat.#")
	c, obs := connected(t, "")

	bad := event(4, "listener", "listening")
	bad.Fields["unencodable"] = func() {}
	sig, err := publish(t, c,
		event(1, "listener", "listening"), event(2, "connection", "inbound"), bad, event(3, "connection", "outbound"))
	require.NoError(t, err)
	assert.Equal(t, outest.BatchACK, sig.Tag)

	var got []amqp091.Delivery
	require.Eventually(t, func() bool { got = append(got, q.drain()...); return len(got) >= 3 }, 30*time.Second, 50*time.Millisecond)
	keys := map[int]string{}
	for _, d := range got {
		assert.Equal(t, "application/json", d.ContentType)
		assert.Equal(t, amqp091.Persistent, d.DeliveryMode)
		assert.Equal(t, "connbeat", d.Exchange)
		assert.Equal(t, "connbeat", d.AppId)
		assert.Equal(t, time.Unix(1700000000, 0).UTC(), d.Timestamp.UTC())
		var body map[string]interface{}
		require.NoError(t, json.Unmarshal(d.Body, &body), "%s", d.Body)
		assert.Equal(t, "2023-11-14T22:13:20.000Z", body["@timestamp"])
		keys[int(body["id"].(float64))] = d.RoutingKey
	}
	assert.Equal(t, map[int]string{
		1: "connbeat.listener.listening",
		2: "connbeat.connection.inbound",
		3: "connbeat.connection.outbound",
	}, keys)
	assert.Equal(t, 3, obs.Acked)
	assert.Equal(t, 1, obs.Permanent, "the unencodable event counted once")
	assert.Zero(t, obs.Retryable)
	assert.Greater(t, obs.Bytes, 0)
}

// TestRoutingKeyOptions: a custom format string, conditional routing_keys,
// transient delivery and a direct exchange.
func TestRoutingKeyOptions(t *testing.T) {
	q := newConsumer(t, "cb-custom", "custom", nil, "#")
	c, _ := connected(t, `exchange: cb-custom
persistent: false
routing_keys:
  - routing_key: "listeners"
    when.equals: {connbeat.kind: listener}
  - routing_key: "other.%{[id]}"
`)
	sig, err := publish(t, c, event(1, "listener", "listening"), event(2, "connection", "inbound"))
	require.NoError(t, err)
	require.Equal(t, outest.BatchACK, sig.Tag)
	var got []amqp091.Delivery
	require.Eventually(t, func() bool { got = append(got, q.drain()...); return len(got) >= 2 }, 30*time.Second, 50*time.Millisecond)
	keys := []string{got[0].RoutingKey, got[1].RoutingKey}
	sort.Strings(keys)
	assert.Equal(t, []string{"listeners", "other.2"}, keys)
	assert.Equal(t, amqp091.Transient, got[0].DeliveryMode)
}

// TestNackedEventsRetried: a queue that rejects publishes beyond two
// messages makes the broker nack the rest; only the nacked events are
// handed back for retry, and sent again once there is room.
func TestNackedEventsRetried(t *testing.T) {
	q := newConsumer(t, "cb-nack", "tiny", amqp091.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"}, "#")
	c, obs := connected(t, "exchange: cb-nack")
	sig, err := publish(t, c, event(1, "listener", "listening"), event(2, "listener", "listening"),
		event(3, "listener", "listening"), event(4, "listener", "listening"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "broker nacked 2 messages")
	require.Equal(t, outest.BatchRetryEvents, sig.Tag)
	var retried []int
	for _, e := range sig.Events {
		retried = append(retried, int(e.Content.Fields["id"].(int)))
	}
	assert.Equal(t, []int{3, 4}, retried)
	assert.Equal(t, 2, obs.Acked)
	assert.Equal(t, 2, obs.Retryable)
	assert.Len(t, q.drain(), 2, "room for two more")

	require.NoError(t, c.Connect(t.Context()))
	sig, err = publish(t, c, event(3, "listener", "listening"), event(4, "listener", "listening"))
	require.NoError(t, err)
	assert.Equal(t, outest.BatchACK, sig.Tag)
	assert.Len(t, q.drain(), 2)
}

// TestUnconfirmedNotAcked: with the broker's memory alarm on it stops
// reading from publishers, so no confirm comes: after confirm_timeout
// the batch is handed back, not ACKed, and Close returns although the
// broker does not answer. Once the alarm is off the events go through.
func TestUnconfirmedNotAcked(t *testing.T) {
	b := broker(t)
	q := newConsumer(t, "connbeat", "alarm", nil, "#")
	c, obs := connected(t, "confirm_timeout: 2s")
	_, err := b.Ctl(t.Context(), "set_vm_memory_high_watermark", "0")
	require.NoError(t, err)
	defer func() { _, _ = b.Ctl(t.Context(), "set_vm_memory_high_watermark", "0.4") }()

	sig, err := publish(t, c, event(1, "listener", "listening"), event(2, "listener", "listening"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no confirm within 2s")
	assert.Equal(t, outest.BatchRetryEvents, sig.Tag)
	assert.Len(t, sig.Events, 2, "nothing unconfirmed is ACKed")
	assert.Zero(t, obs.Acked)
	assert.Equal(t, 1, obs.WriteErrors)

	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close blocked on a broker that does not answer")
	}

	_, err = b.Ctl(t.Context(), "set_vm_memory_high_watermark", "0.4")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.Connect(t.Context()) == nil }, 30*time.Second, 200*time.Millisecond)
	sig, err = publish(t, c, event(1, "listener", "listening"), event(2, "listener", "listening"))
	require.NoError(t, err)
	assert.Equal(t, outest.BatchACK, sig.Tag)
	var got []amqp091.Delivery
	require.Eventually(t, func() bool { got = append(got, q.drain()...); return len(got) >= 2 }, 30*time.Second, 50*time.Millisecond)
	assert.LessOrEqual(t, len(got), 4, "at most the two retried events twice")
}

// TestBrokerDown: a publish to a stopped broker is retried, never ACKed;
// Connect fails with the reason; after a restart on the same port and data
// the durable queue has every message once it was confirmed.
func TestBrokerDown(t *testing.T) {
	b := broker(t)
	q := newConsumer(t, "connbeat", "durable", nil, "connbeat.listener.*")
	c, obs := connected(t, "")
	sig, err := publish(t, c, event(1, "listener", "listening"))
	require.NoError(t, err)
	require.Equal(t, outest.BatchACK, sig.Tag)
	q.conn.Close()

	require.NoError(t, b.Stop())
	restarted := false
	defer func() {
		if !restarted {
			require.NoError(t, b.Restart())
		}
	}()
	sig, err = publish(t, c, event(2, "listener", "listening"))
	require.Error(t, err)
	assert.NotEqual(t, outest.BatchACK, sig.Tag)
	err = c.Connect(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
	start := time.Now()
	require.NoError(t, c.Close())
	assert.Less(t, time.Since(start), 10*time.Second, "Close returns while the broker is down")

	require.NoError(t, b.Restart())
	restarted = true
	require.NoError(t, c.Connect(t.Context()))
	sig, err = publish(t, c, event(2, "listener", "listening"))
	require.NoError(t, err)
	assert.Equal(t, outest.BatchACK, sig.Tag)
	assert.Equal(t, 2, obs.Acked)

	q = openQueue(t, "durable")
	ids := []int{}
	require.Eventually(t, func() bool {
		for _, d := range q.drain() {
			var body map[string]interface{}
			require.NoError(t, json.Unmarshal(d.Body, &body))
			ids = append(ids, int(body["id"].(float64)))
		}
		return len(ids) >= 2
	}, 30*time.Second, 50*time.Millisecond)
	assert.Equal(t, []int{1, 2}, ids, "the message confirmed before the stop survived it")
}

// TestFailover: the first host refuses, the second is used.
func TestFailover(t *testing.T) {
	b := broker(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close()
	c, _, err := newTestClient(t, fmt.Sprintf("hosts: ['amqp://%s/', %q]\nusername: %s\npassword: %s", dead, b.URL(), testUser, testPass))
	require.NoError(t, err)
	require.NoError(t, c.Connect(t.Context()))
	sig, err := publish(t, c, event(1, "listener", "listening"))
	require.NoError(t, err)
	assert.Equal(t, outest.BatchACK, sig.Tag)
	assert.Equal(t, 1, c.next, "the second host is in use")
}

// runTest runs the output's Test (as `connbeat test output` does) and
// returns what it printed.
func runTest(t *testing.T, yaml string) string {
	t.Helper()
	c, _, err := newTestClient(t, yaml)
	require.NoError(t, err)
	var out bytes.Buffer
	c.Test(libtesting.NewConsoleDriverWithKiller(&out, func() {}))
	return out.String()
}

func TestTestOutput(t *testing.T) {
	b := broker(t)
	dead := fmt.Sprintf("amqp://127.0.0.1:%d/", freePort(t))
	auth := fmt.Sprintf("username: %s\npassword: %s\n", testUser, testPass)
	newConsumer(t, "cb-exists", "q-exists", nil)
	for _, tc := range []struct {
		name, yaml string
		want       []string
		ok         bool
	}{
		{"declare", fmt.Sprintf("hosts: [%q]\n%s", b.URL(), auth), []string{"amqp: " + b.URL(), `exchange: "connbeat" (topic) declared`}, true},
		{"exists", fmt.Sprintf("hosts: [%q]\n%sexchange: cb-exists\nexchange_declare: false", b.URL(), auth), []string{`exchange: "cb-exists" (topic) exists`}, true},
		{"missing", fmt.Sprintf("hosts: [%q]\n%sexchange: nowhere\nexchange_declare: false", b.URL(), auth), []string{`exchange "nowhere" does not exist`, "exchange_declare: true"}, false},
		{"dead", fmt.Sprintf("hosts: [%q]\n%s", dead, auth), []string{"connection refused"}, false},
		{"password", fmt.Sprintf("hosts: [%q]\nusername: %s\npassword: wrong-one", b.URL(), testUser), []string{"403", "check output.amqp.username/password"}, false},
		{"url userinfo", fmt.Sprintf("hosts: ['amqp://%s:%s@127.0.0.1:%d/']", testUser, testPass, b.Port), []string{"declared"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runTest(t, tc.yaml)
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			assert.Equal(t, !tc.ok, strings.Contains(out, "ERROR"), out)
			assert.NotContains(t, out, testPass)
			assert.NotContains(t, out, "wrong-one")
		})
	}
}

// TestTLS delivers over amqps:// with a client certificate the broker
// requires, and shows that a certificate from another CA, or none, is
// refused with an error that says so.
func TestTLS(t *testing.T) {
	b := broker(t)
	cs := shared.certs
	base := fmt.Sprintf("hosts: [%q]\nusername: %s\npassword: %s\nssl.certificate_authorities: [%q]\n", b.TLSURL(), testUser, testPass, cs.CA)

	q := newConsumer(t, "connbeat", "tls", nil, "#")
	c, _, err := newTestClient(t, base+fmt.Sprintf("ssl.certificate: %q\nssl.key: %q\n", cs.ClientCert, cs.ClientKey))
	require.NoError(t, err)
	require.NoError(t, c.Connect(t.Context()))
	assert.True(t, c.sess.tlsState.HandshakeComplete)
	sig, err := publish(t, c, event(7, "listener", "listening"))
	require.NoError(t, err)
	assert.Equal(t, outest.BatchACK, sig.Tag)
	var got []amqp091.Delivery
	require.Eventually(t, func() bool { got = append(got, q.drain()...); return len(got) >= 1 }, 30*time.Second, 50*time.Millisecond)
	assert.Contains(t, string(got[0].Body), `"id":7`)

	out := runTest(t, base+fmt.Sprintf("ssl.certificate: %q\nssl.key: %q\n", cs.ClientCert, cs.ClientKey))
	assert.NotContains(t, out, "ERROR", out)
	assert.Contains(t, out, "TLS: yes")

	for name, extra := range map[string]string{
		"rogue client certificate": fmt.Sprintf("ssl.certificate: %q\nssl.key: %q\n", cs.RogueCert, cs.RogueKey),
		"no client certificate":    "",
	} {
		t.Run(name, func(t *testing.T) {
			c, _, err := newTestClient(t, base+extra)
			require.NoError(t, err)
			err = c.Connect(t.Context())
			require.Error(t, err)
			t.Logf("refused: %v", err)
			// Go sends no certificate that the broker's list of accepted
			// CAs excludes, so both are refused as missing.
			assert.Contains(t, err.Error(), "the broker refused the TLS client: remote error: tls: certificate required")
			assert.Contains(t, err.Error(), "check output.amqp.ssl.certificate")
		})
	}

	// The server's certificate is checked too: without the test CA the
	// client refuses the broker.
	c, _, err = newTestClient(t, fmt.Sprintf("hosts: [%q]\nusername: %s\npassword: %s\n", b.TLSURL(), testUser, testPass))
	require.NoError(t, err)
	err = c.Connect(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate signed by unknown authority")
}

// freePort returns a TCP port that was free a moment ago, outside the
// ephemeral range the tests' own connections take theirs from.
func freePort(t *testing.T) int {
	ports, err := testkit.FreePorts(1)
	require.NoError(t, err)
	return ports[0]
}
