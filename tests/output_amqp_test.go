package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/certs"
	"github.com/connbeat/connbeat/internal/testkit/rabbit"
)

const (
	amqpUser = "connbeat"
	amqpPass = "amqp-s3cret"
)

// startRabbit runs a private rabbitmq-server for one test (see
// rabbit.Require for when it cannot).
func startRabbit(t *testing.T, pki *certs.Files) *rabbit.Broker {
	t.Helper()
	rabbit.Require(t)
	opts := rabbit.Options{User: amqpUser, Password: amqpPass}
	if pki != nil {
		opts.TLS = rabbit.TLSFor(*pki)
	}
	b, err := rabbit.Start(t.TempDir(), opts)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

// amqpQueue reads a durable queue bound to the durable topic exchange
// connbeat, keeping every message it has read across broker restarts.
type amqpQueue struct {
	t     *testing.T
	b     *rabbit.Broker
	name  string
	mu    sync.Mutex
	conn  *amqp.Connection
	ch    *amqp.Channel
	got   []Event
	keys  []string // routing key of each message in got
	total int
}

func bindQueue(t *testing.T, b *rabbit.Broker, name, key string) *amqpQueue {
	t.Helper()
	// The same arguments as the output's default declaration: a durable
	// topic exchange named connbeat.
	return bindQueueTo(t, b, "connbeat", "topic", name, key)
}

// bindQueueTo declares a durable exchange of the given type and binds a
// durable queue to it with key.
func bindQueueTo(t *testing.T, b *rabbit.Broker, exchange, kind, name, key string) *amqpQueue {
	t.Helper()
	q := &amqpQueue{t: t, b: b, name: name}
	require.NoError(t, q.open())
	require.NoError(t, q.ch.ExchangeDeclare(exchange, kind, true, false, false, false, nil))
	_, err := q.ch.QueueDeclare(name, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, q.ch.QueueBind(name, key, exchange, false, nil))
	t.Cleanup(func() { q.close() })
	return q
}

func (q *amqpQueue) open() error {
	conn, err := amqp.Dial(fmt.Sprintf("amqp://%s:%s@127.0.0.1:%d/", amqpUser, amqpPass, q.b.Port))
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return err
	}
	q.conn, q.ch = conn, ch
	return nil
}

func (q *amqpQueue) close() {
	if q.conn != nil {
		q.conn.Close()
		q.conn = nil
	}
}

// read takes every message in the queue now (reconnecting after a broker
// restart) and returns all events read so far.
func (q *amqpQueue) read() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.conn == nil || q.conn.IsClosed() {
		if err := q.open(); err != nil {
			return append([]Event(nil), q.got...)
		}
	}
	for {
		d, ok, err := q.ch.Get(q.name, true)
		if err != nil || !ok {
			break
		}
		var ev Event
		require.NoError(q.t, json.Unmarshal(d.Body, &ev), "%s", d.Body)
		assert.Equal(q.t, "application/json", d.ContentType)
		assert.Equal(q.t, amqp.Persistent, d.DeliveryMode)
		q.got = append(q.got, ev)
		q.keys = append(q.keys, d.RoutingKey)
	}
	return append([]Event(nil), q.got...)
}

func amqpOutput(url string, extra string) string {
	return fmt.Sprintf("output.amqp:\n  hosts: [%q]\n  username: %s\n  password: %s\n  backoff: {init: 200ms, max: 1s}\n%s", url, amqpUser, amqpPass, extra)
}

// TestAMQPOutputOutage ships the events of the test's own loopback
// sockets to a real RabbitMQ through a durable queue bound to the
// exchange, checks their routing keys, stops the broker for 10 s while
// new listeners keep being opened, starts it again on the same port and
// data, and checks that every listener arrived at least once and that
// duplicates stay within what retried batches explain.
func TestAMQPOutputOutage(t *testing.T) {
	t.Parallel()
	const ip = "127.0.0.41"
	b := startRabbit(t, nil)
	q := bindQueue(t, b, "outage", "connbeat.#")
	mon := freePort(t)
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 10m", amqpOutput(b.URL(), ""),
		"queue.mem.flush.min_events: 1", monitoring(mon), keepOwn(ip))

	pre := ownListeners(t, ip, 1)
	// One connection of the test process to its own listener: an
	// outbound and an inbound event.
	// From ip too: the agent keeps only sockets with local_ip ip.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := d.Dial("tcp", pre[0].Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	// Accepted, the inbound socket has an owner (the test process).
	accepted, err := pre[0].Accept()
	require.NoError(t, err)
	defer accepted.Close()
	eventually(t, a, 60*time.Second, "listener and connection events in the queue", func() bool {
		evs := q.read()
		in, out := false, false
		for _, e := range evs {
			in = in || e.Str("direction") == "inbound"
			out = out || e.Str("direction") == "outbound"
		}
		return allArrived(listenerCounts(evs, ip), pre) && in && out
	})
	q.mu.Lock()
	for i, e := range q.got {
		assert.Equal(t, "connbeat."+e.Str("connbeat.kind")+"."+e.Str("connbeat.direction"), q.keys[i])
		assert.Contains(t, []string{"connbeat.listener.listening", "connbeat.connection.inbound", "connbeat.connection.outbound"}, q.keys[i])
	}
	q.mu.Unlock()

	require.NoError(t, b.Stop())
	var during []net.Listener
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		during = append(during, ownListeners(t, ip, 1)...)
		time.Sleep(500 * time.Millisecond)
	}
	require.NoError(t, b.Restart())

	eventually(t, a, 120*time.Second, "every listener opened during the outage in the queue",
		func() bool { return allArrived(listenerCounts(q.read(), ip), during) })
	// Let retried batches that were confirmed late show up.
	time.Sleep(2 * time.Second)
	counts := listenerCounts(q.read(), ip)
	total, dups := 0, 0
	for _, l := range append(pre, during...) {
		n := counts[portOf(l)]
		assert.GreaterOrEqual(t, n, 1, "listener %v arrives at least once", l.Addr())
		total += n
		dups += n - 1
	}
	t.Logf("%d listeners opened during a 10 s outage; %d listener events received, %d duplicates", len(during), total, dups)
	assert.LessOrEqual(t, total, 2*len(append(pre, during...)), "at-least-once: no more duplicates than one retry per event")

	st := agentStats(t, mon)
	assert.Zero(t, st.num(t, "libbeat.pipeline.events.dropped"), "nothing given up")
	assert.Greater(t, st.num(t, "libbeat.output.events.acked"), float64(0))
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// TestAMQPTLS delivers over amqps:// with a client certificate to a
// broker that requires one, and runs `connbeat test output` with that
// certificate, with one signed by another CA, and against an exchange that
// does not exist.
func TestAMQPTLS(t *testing.T) {
	t.Parallel()
	const ip = "127.0.0.42"
	pki, err := certs.Write(t.TempDir())
	require.NoError(t, err)
	b := startRabbit(t, &pki)
	q := bindQueue(t, b, "tls", "connbeat.listener.*")

	tlsOpts := func(cert, key string) string {
		return fmt.Sprintf("  ssl.certificate_authorities: [%q]\n  ssl.certificate: %q\n  ssl.key: %q\n", pki.CA, cert, key)
	}
	good := tlsOpts(pki.ClientCert, pki.ClientKey)
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 10m", amqpOutput(b.TLSURL(), good),
		"queue.mem.flush.min_events: 1", keepOwn(ip))
	lns := ownListeners(t, ip, 2)
	eventually(t, a, 60*time.Second, "listeners delivered over amqps",
		func() bool { return allArrived(listenerCounts(q.read(), ip), lns) })
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))

	for _, tc := range []struct {
		name, output string
		code         int
		want         []string
	}{
		{"client certificate", amqpOutput(b.TLSURL(), good), 0, []string{"amqp: " + b.TLSURL(), "TLS: yes", `exchange: "connbeat" (topic) declared`}},
		{"certificate of another CA", amqpOutput(b.TLSURL(), tlsOpts(pki.RogueCert, pki.RogueKey)), 1,
			[]string{"ERROR", "the broker refused the TLS client: remote error: tls: certificate required", "check output.amqp.ssl.certificate"}},
		{"missing exchange", amqpOutput(b.URL(), "  exchange: absent\n  exchange_declare: false\n"), 1,
			[]string{"ERROR", `exchange "absent" does not exist`}},
		{"dead broker", amqpOutput(fmt.Sprintf("amqp://127.0.0.1:%d/", freePort(t)), ""), 1, []string{"ERROR", "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeConfig(t, AgentOptions{Extra: "output.console.enabled: false\n" + tc.output + "\n"})
			out, errOut, code := connbeat(t, "", "test", "output", "-c", filepath.Join(dir, "connbeat.yml"), "--strict.perms=false")
			assert.Equal(t, tc.code, code, out+errOut)
			for _, w := range tc.want {
				assert.Contains(t, out+errOut, w)
			}
			assert.NotContains(t, out+errOut, amqpPass, "the password is never printed")
		})
	}
}
