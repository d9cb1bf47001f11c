package zeromq

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs"
	_ "github.com/elastic/beats/v7/libbeat/outputs/codec/format" // registered by libbeat in the binary
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/mapstr"
	"github.com/elastic/elastic-agent-libs/monitoring"
	"github.com/go-zeromq/zmq4"
	"github.com/stretchr/testify/require"
)

// metrics reads the counters libbeat's own observer (outputs.Stats)
// keeps for the output: the same that `libbeat.output.*` reports.
type metrics struct{ reg *monitoring.Registry }

func (m metrics) get(name string) int64 {
	return monitoring.CollectFlatSnapshot(m.reg, monitoring.Full, false).Ints[name]
}

// newTestClient builds a connected client from YAML settings, with
// libbeat's real metrics observer.
func newTestClient(t testing.TB, yaml string) (*client, metrics) {
	t.Helper()
	raw, err := config.NewConfigWithYAML([]byte(yaml), "test")
	require.NoError(t, err)
	c, err := loadConfig(raw)
	require.NoError(t, err)
	reg := monitoring.NewRegistry()
	enc, err := newCodec(beat.Info{Beat: "connbeat", Version: "0.1.0", Logger: logp.NewNopLogger()}, c.Codec)
	require.NoError(t, err)
	cl, err := newClient(&c, outputs.NewStats(reg, logp.NewNopLogger()), enc, "connbeat", logp.NewNopLogger())
	require.NoError(t, err)
	require.NoError(t, cl.Connect(t.Context()))
	t.Cleanup(func() { cl.Close() })
	return cl, metrics{reg: reg}
}

// boundEndpoint is where a client that bound port 0 listens.
func (c *client) boundEndpoint() string {
	s := c.socket()
	if s.ep.network == "unix" {
		return "ipc://" + s.ln.Addr().String()
	}
	return "tcp://" + s.ln.Addr().String()
}

// event is a connbeat event of kind on host, numbered id.
func event(id int, kind, host string) beat.Event {
	return beat.Event{
		Timestamp: time.Unix(1700000000, 0).UTC(),
		Fields: mapstr.M{
			"id":       id,
			"connbeat": mapstr.M{"kind": kind},
			"host":     mapstr.M{"name": host},
		},
	}
}

// publish runs one Publish of evs and returns the batch's signals.
func publish(t *testing.T, c *client, evs ...beat.Event) []outest.BatchSignal {
	t.Helper()
	b := outest.NewBatch(evs...)
	require.NoError(t, c.Publish(t.Context(), b))
	require.Len(t, b.Signals, 1, "exactly one signal per Publish")
	return b.Signals
}

// waitFor polls cond every 10 ms; the deadline is generous because the
// machine is shared with other test runs.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSubscribed waits until n connected peers of c subscribed to prefix:
// a subscription travels to the publisher after the connection, and what
// is published before it arrives is (rightly) dropped.
func waitSubscribed(t testing.TB, c *client, prefix string, n int) {
	t.Helper()
	waitFor(t, "subscription to "+prefix, func() bool {
		got := 0
		for _, p := range c.socket().live() {
			p.mu.Lock()
			if p.subs.has(prefix) > 0 {
				got++
			}
			p.mu.Unlock()
		}
		return got >= n
	})
}

func waitPeers(t *testing.T, c *client, n int) {
	t.Helper()
	waitFor(t, "peers connected", func() bool { return len(c.socket().live()) == n })
}

// received is a message as a ZeroMQ peer got it.
type received struct {
	topic string
	id    int
	kind  string
}

// decode checks a two-frame message and decodes its JSON event.
func decode(t *testing.T, msg zmq4.Msg) received {
	t.Helper()
	require.Len(t, msg.Frames, 2, "topic frame, then the event")
	var ev struct {
		ID       int `json:"id"`
		Connbeat struct {
			Kind string `json:"kind"`
		} `json:"connbeat"`
		Timestamp string `json:"@timestamp"`
	}
	require.NoError(t, json.Unmarshal(msg.Frames[1], &ev), "%s", msg.Frames[1])
	require.Equal(t, "2023-11-14T22:13:20.000Z", ev.Timestamp)
	return received{topic: string(msg.Frames[0]), id: ev.ID, kind: ev.Connbeat.Kind}
}

// recvN receives n messages from s, failing after a generous deadline.
func recvN(t *testing.T, s zmq4.Socket, n int) []received {
	t.Helper()
	type result struct {
		msg zmq4.Msg
		err error
	}
	out := make([]received, 0, n)
	for len(out) < n {
		ch := make(chan result, 1)
		go func() { m, err := s.Recv(); ch <- result{m, err} }()
		select {
		case r := <-ch:
			require.NoError(t, r.err)
			out = append(out, decode(t, r.msg))
		case <-time.After(30 * time.Second):
			t.Fatalf("received %d of %d messages", len(out), n)
		}
	}
	return out
}

func topicsOf(rs []received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.topic
	}
	return out
}

func idsOf(rs []received) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.id
	}
	return out
}

func yamlFor(endpoint string, extra ...string) string {
	return "endpoint: '" + endpoint + "'\n" + strings.Join(extra, "\n")
}
