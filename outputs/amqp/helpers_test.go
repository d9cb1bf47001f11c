package amqp

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/mapstr"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/outputtest"
	"github.com/connbeat/connbeat/internal/rabbit"
	"github.com/connbeat/connbeat/internal/testcerts"
)

// The package's tests share one broker (starting one takes ~6 s); tests
// that stop it start it again before they end, so none runs in parallel.
var shared struct {
	broker *rabbit.Broker
	certs  testcerts.Certs
	why    error // why there is no broker
}

const (
	testUser = "connbeat"
	testPass = "pa55-word"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "amqpout-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.why = rabbit.Available()
	if shared.why == nil {
		shared.certs, shared.why = testcerts.Write(dir)
	}
	if shared.why == nil {
		shared.broker, shared.why = rabbit.Start(dir, rabbit.Options{User: testUser, Password: testPass, TLS: rabbit.TLSFor(shared.certs)})
		if shared.why != nil && !strings.Contains(shared.why.Error(), rabbit.ErrUnavailable.Error()) {
			fmt.Fprintln(os.Stderr, "starting rabbitmq-server:", shared.why)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	if shared.broker != nil {
		shared.broker.Close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// broker returns the shared broker or skips the test.
func broker(t *testing.T) *rabbit.Broker {
	t.Helper()
	if shared.broker == nil {
		t.Skip(shared.why)
	}
	return shared.broker
}

// counters records what the output reports to libbeat's observer.
type counters = outputtest.Counters

// newTestClient builds a client from YAML settings (not connected).
func newTestClient(t *testing.T, yaml string) (*client, *counters, error) {
	t.Helper()
	raw, err := config.NewConfigWithYAML([]byte(yaml), "test")
	require.NoError(t, err)
	obs := &counters{}
	info := beat.Info{Beat: "connbeat", Version: "0.1.0", Logger: logp.NewNopLogger()}
	cl, _, err := newClient(info, obs, raw, logp.NewNopLogger())
	if err == nil {
		t.Cleanup(func() { cl.Close() })
	}
	return cl, obs, err
}

// connected builds and connects a client to the shared broker.
func connected(t *testing.T, extra string) (*client, *counters) {
	t.Helper()
	b := broker(t)
	cl, obs, err := newTestClient(t, fmt.Sprintf("hosts: [%q]\nusername: %s\npassword: %s\n%s", b.URL(), testUser, testPass, extra))
	require.NoError(t, err)
	require.NoError(t, cl.Connect(t.Context()))
	return cl, obs
}

// event is a connbeat event of the given kind and direction.
func event(id int, kind, direction string) beat.Event {
	return beat.Event{Timestamp: time.Unix(1700000000, 0).UTC(), Fields: mapstr.M{
		"id":       id,
		"connbeat": mapstr.M{"kind": kind, "direction": direction},
	}}
}

// consumer is a test-side AMQP connection with a durable queue bound to
// an exchange.
type consumer struct {
	t     *testing.T
	conn  *amqp091.Connection
	ch    *amqp091.Channel
	queue string
}

// newConsumer declares the exchange and an empty durable queue bound to
// it with keys.
func newConsumer(t *testing.T, exchange, queue string, args amqp091.Table, keys ...string) *consumer {
	t.Helper()
	c := openQueue(t, queue)
	require.NoError(t, c.ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil))
	_, err := c.ch.QueueDeclare(queue, true, false, false, false, args)
	require.NoError(t, err)
	_, err = c.ch.QueuePurge(queue, false)
	require.NoError(t, err)
	for _, k := range keys {
		require.NoError(t, c.ch.QueueBind(queue, k, exchange, false, nil))
	}
	return c
}

// openQueue reads an existing queue.
func openQueue(t *testing.T, queue string) *consumer {
	t.Helper()
	b := broker(t)
	conn, err := amqp091.Dial(fmt.Sprintf("amqp://%s:%s@127.0.0.1:%d/", testUser, testPass, b.Port))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return &consumer{t: t, conn: conn, ch: ch, queue: queue}
}

// drain returns every message in the queue now.
func (c *consumer) drain() []amqp091.Delivery {
	c.t.Helper()
	var out []amqp091.Delivery
	for {
		d, ok, err := c.ch.Get(c.queue, true)
		require.NoError(c.t, err)
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// publish runs one Publish and returns its single signal.
func publish(t *testing.T, c *client, evs ...beat.Event) (outest.BatchSignal, error) {
	t.Helper()
	b := outest.NewBatch(evs...)
	err := c.Publish(t.Context(), b)
	require.Len(t, b.Signals, 1, "exactly one signal per Publish")
	return b.Signals[0], err
}
