package zeromq

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/elastic/elastic-agent-libs/mapstr"
	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mixed is a batch of listener and connection events from two hosts.
func mixed() []beat.Event {
	var evs []beat.Event
	for i := 1; i <= 30; i++ {
		kind := []string{"listener", "connection", "connection"}[i%3]
		host := "web-1"
		if i%5 == 0 {
			host = "web-2"
		}
		evs = append(evs, event(i, kind, host))
	}
	return evs
}

// TestPubTopicPrefix: zmq4 SUB sockets with topic prefixes receive exactly
// the events whose topic matches, as two-frame messages in order; events
// no subscriber wants are ACKed and counted as dropped.
func TestPubTopicPrefix(t *testing.T) {
	for _, tc := range []struct{ name, endpoint string }{
		{"tcp", "tcp://127.0.0.1:0"},
		{"ipc", "ipc://" + filepath.Join(t.TempDir(), "connbeat.sock")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, m := newTestClient(t, yamlFor(tc.endpoint))
			ep := c.boundEndpoint()

			subs := map[string]zmq4.Socket{}
			for _, prefix := range []string{"listener.", "connection.v1.web-1"} {
				s := zmq4.NewSub(t.Context())
				t.Cleanup(func() { s.Close() })
				require.NoError(t, s.Dial(ep))
				require.NoError(t, s.SetOption(zmq4.OptionSubscribe, prefix))
				subs[prefix] = s
				waitSubscribed(t, c, prefix, 1)
			}

			evs := mixed()
			var wantL, wantC []int
			dropped := 0
			for _, e := range evs {
				id := e.Fields["id"].(int)
				kind := e.Fields["connbeat"].(mapstr.M)["kind"]
				host := e.Fields["host"].(mapstr.M)["name"]
				switch {
				case kind == "listener":
					wantL = append(wantL, id)
				case host == "web-1":
					wantC = append(wantC, id)
				default:
					dropped++
				}
			}
			require.NotZero(t, dropped, "the batch has events nobody subscribed to")
			assert.Equal(t, outest.BatchACK, publish(t, c, evs...)[0].Tag)

			gotL := recvN(t, subs["listener."], len(wantL))
			gotC := recvN(t, subs["connection.v1.web-1"], len(wantC))
			assert.Equal(t, wantL, idsOf(gotL))
			assert.Equal(t, wantC, idsOf(gotC))
			for _, r := range gotL {
				assert.Contains(t, []string{"listener.v1.web-1", "listener.v1.web-2"}, r.topic)
				assert.Equal(t, "listener", r.kind)
			}
			for _, r := range gotC {
				assert.Equal(t, "connection.v1.web-1", r.topic)
			}

			// Nothing else is on the way: a last event for each
			// subscriber arrives right after what they already got.
			assert.Equal(t, outest.BatchACK, publish(t, c, event(100, "listener", "x"), event(101, "connection", "web-1"))[0].Tag)
			assert.Equal(t, []int{100}, idsOf(recvN(t, subs["listener."], 1)))
			assert.Equal(t, []int{101}, idsOf(recvN(t, subs["connection.v1.web-1"], 1)))

			assert.Equal(t, int64(len(evs)+2), m.get("events.total"))
			assert.Equal(t, int64(len(wantL)+len(wantC)+2), m.get("events.acked"))
			assert.Equal(t, int64(dropped), m.get("events.dropped"))
			waitFor(t, "bytes counted", func() bool { return m.get("write.bytes") > 0 })
		})
	}
}

// TestPubNoSubscriber: with nobody subscribed and a tiny HWM, Publish
// returns at once, ACKs the batch and counts every event as dropped.
func TestPubNoSubscriber(t *testing.T) {
	c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "send_hwm: 1", "send_timeout: 1h"))
	var evs []beat.Event
	for i := 0; i < 500; i++ {
		evs = append(evs, event(i, "connection", "web-1"))
	}
	done := make(chan []outest.BatchSignal, 1)
	go func() { done <- publish(t, c, evs...) }()
	select {
	case sig := <-done:
		assert.Equal(t, outest.BatchACK, sig[0].Tag)
	case <-time.After(20 * time.Second):
		t.Fatal("Publish blocked with no subscriber")
	}
	assert.Equal(t, int64(500), m.get("events.dropped"))
	assert.Equal(t, int64(0), m.get("events.acked"))
	assert.Equal(t, int64(0), m.get("events.failed"))

	// A subscriber to another kind changes nothing for these events.
	s := zmq4.NewSub(t.Context())
	defer s.Close()
	require.NoError(t, s.Dial(c.boundEndpoint()))
	require.NoError(t, s.SetOption(zmq4.OptionSubscribe, "listener."))
	waitSubscribed(t, c, "listener.", 1)
	publish(t, c, evs[:10]...)
	assert.Equal(t, int64(510), m.get("events.dropped"))
}

// TestPubStalledSubscriber: a subscriber that reads nothing gets send_hwm
// messages queued and the rest counted as dropped, while Publish keeps
// returning: with a send_timeout of an hour, a Publish that waited for the
// subscriber would hang. With a short send_timeout the subscriber is cut
// off once it has taken nothing for that long.
func TestPubStalledSubscriber(t *testing.T) {
	t.Run("publish does not wait", func(t *testing.T) {
		c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "send_hwm: 5", "send_timeout: 1h"))
		stallSubscriber(t, c)
		done := make(chan error, 1)
		var total int
		go func() {
			var err error
			total, err = publishBig(t, c, 20)
			done <- err
		}()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "Publish waited for the stalled subscriber")
		}
		dropped, acked := m.get("events.dropped"), m.get("events.acked")
		t.Logf("%d events of 256 KiB to a subscriber that reads nothing, send_hwm 5: %d queued, %d dropped", total, acked, dropped)
		assert.Equal(t, int64(total), dropped+acked)
		assert.Greater(t, dropped, int64(150), "at most send_hwm plus what the socket buffers took got through")
		assert.Zero(t, m.get("write.errors"), "not cut off within send_timeout")
	})
	t.Run("cut off after send_timeout", func(t *testing.T) {
		c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "send_hwm: 5", "send_timeout: 2s"))
		stallSubscriber(t, c)
		_, err := publishBig(t, c, 20)
		require.NoError(t, err)
		waitPeers(t, c, 0)
		assert.Equal(t, int64(1), m.get("write.errors"), "the stalled subscriber was cut off after send_timeout")
	})
}

// stallSubscriber connects a subscriber to everything that never reads,
// with a small receive buffer.
func stallSubscriber(t *testing.T, c *client) {
	t.Helper()
	addr := c.socket().ln.Addr().String()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4096))
	_, err = zmq4.Open(conn, null.Security(), zmq4.Sub, nil, false, nil)
	require.NoError(t, err)
	_, err = conn.Write([]byte{0, 1, 1}) // subscribe to everything, then never read
	require.NoError(t, err)
	waitSubscribed(t, c, "", 1)
}

// publishBig publishes batches of ten 256 KiB events, big enough to fill
// the socket buffers so that a writer stalls, and returns how many. It
// runs outside the test's goroutine too: it returns errors rather than
// failing the test.
func publishBig(t *testing.T, c *client, batches int) (int, error) {
	big := strings.Repeat("x", 256<<10)
	total := 0
	for i := 0; i < batches; i++ {
		var evs []beat.Event
		for j := 0; j < 10; j++ {
			e := event(total, "listener", "web-1")
			e.Fields["pad"] = big
			evs = append(evs, e)
			total++
		}
		b := outest.NewBatch(evs...)
		if err := c.Publish(t.Context(), b); err != nil {
			return total, err
		}
		if len(b.Signals) != 1 || b.Signals[0].Tag != outest.BatchACK {
			return total, fmt.Errorf("batch %d: signals %v, want one ACK", i, b.Signals)
		}
	}
	return total, nil
}

// TestCloseFlushes: events queued for a subscriber when the output closes
// are still written (within the linger).
func TestCloseFlushes(t *testing.T) {
	c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "send_hwm: 100000"))
	s := zmq4.NewSub(t.Context())
	defer s.Close()
	require.NoError(t, s.Dial(c.boundEndpoint()))
	require.NoError(t, s.SetOption(zmq4.OptionSubscribe, ""))
	waitSubscribed(t, c, "", 1)
	var evs []beat.Event
	for i := 0; i < 3000; i++ {
		evs = append(evs, event(i, "listener", "web-1"))
	}
	publish(t, c, evs...)
	require.NoError(t, c.Close())
	got := recvN(t, s, len(evs))
	assert.Equal(t, 3000, len(got))
	assert.Equal(t, 2999, got[len(got)-1].id)
	assert.Equal(t, int64(3000), m.get("events.acked"))
}

// TestTopicAndCodec: a custom topic with a fallback, libbeat's format
// codec for the second frame, and an event that lacks a field the topic
// needs (dropped and counted).
func TestTopicAndCodec(t *testing.T) {
	c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0",
		"topic: 'cb.%{[connbeat.kind]}.%{[direction]:none}'",
		"codec.format.string: 'id=%{[id]}'"))
	s := zmq4.NewSub(t.Context())
	defer s.Close()
	require.NoError(t, s.Dial(c.boundEndpoint()))
	require.NoError(t, s.SetOption(zmq4.OptionSubscribe, "cb."))
	waitSubscribed(t, c, "cb.", 1)

	withDir := event(1, "connection", "web-1")
	withDir.Fields["direction"] = "inbound"
	noKind := event(2, "connection", "web-1")
	delete(noKind.Fields, "connbeat")
	publish(t, c, withDir, noKind, event(3, "listener", "web-1"))

	var got []string
	for range 2 {
		msg, err := s.Recv()
		require.NoError(t, err)
		require.Len(t, msg.Frames, 2)
		got = append(got, string(msg.Frames[0])+" "+string(msg.Frames[1]))
	}
	assert.Equal(t, []string{"cb.connection.inbound id=1", "cb.listener.none id=3"}, got)
	assert.Equal(t, int64(1), m.get("events.dropped"), "the event without connbeat.kind")
	assert.Equal(t, int64(2), m.get("events.acked"))
}

// TestSubscriptions: prefixes are counted like libzmq's (two subscriptions
// need two unsubscriptions), and a peer that subscribes to more than
// maxSubscriptions prefixes is refused.
func TestSubscriptions(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	p := newPeer(a, 1, time.Second)
	defer p.close()
	require.NoError(t, p.subscribe("listener.", true))
	require.NoError(t, p.subscribe("listener.", true))
	require.NoError(t, p.subscribe("listener.", false))
	assert.True(t, p.subscribed("listener.v1.web-1"))
	assert.False(t, p.subscribed("connection.v1.web-1"))
	require.NoError(t, p.subscribe("listener.", false))
	assert.False(t, p.subscribed("listener.v1.web-1"))
	require.NoError(t, p.subscribe("", true))
	assert.True(t, p.subscribed("connection.v1.web-1"), "the empty prefix matches all")

	c, _ := newTestClient(t, yamlFor("tcp://127.0.0.1:0"))
	conn, err := net.Dial("tcp", c.socket().ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = zmq4.Open(conn, null.Security(), zmq4.Sub, nil, false, nil)
	require.NoError(t, err)
	waitPeers(t, c, 1)
	var msgs []byte
	for i := 0; i <= maxSubscriptions; i++ {
		body := fmt.Sprintf("\x01p%d.", i)
		msgs = append(appendFrameHeader(msgs, len(body), false), body...)
	}
	_, err = conn.Write(msgs)
	require.NoError(t, err)
	waitPeers(t, c, 0)
}
