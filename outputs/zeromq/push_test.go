package zeromq

import (
	"net"
	"sort"
	"strings"
	"testing"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func numbered(from, n int) []beat.Event {
	evs := make([]beat.Event, n)
	for i := range evs {
		evs[i] = event(from+i, "connection", "web-1")
	}
	return evs
}

func idsOfEvents(b outest.BatchSignal) []int {
	out := make([]int, len(b.Events))
	for i, e := range b.Events {
		out[i] = e.Content.Fields["id"].(int)
	}
	return out
}

// TestPushToPull: every event reaches a zmq4 PULL peer, in order, with
// its topic frame; two peers share the events round robin, each event
// once.
func TestPushToPull(t *testing.T) {
	c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "mode: push"))
	ep := c.boundEndpoint()
	pull := zmq4.NewPull(t.Context())
	defer pull.Close()
	require.NoError(t, pull.Dial(ep))
	waitPeers(t, c, 1)

	assert.Equal(t, outest.BatchACK, publish(t, c, numbered(0, 500)...)[0].Tag)
	got := recvN(t, pull, 500)
	assert.Equal(t, idsOf(got), seq(0, 500))
	assert.Equal(t, "connection.v1.web-1", got[0].topic)
	assert.Equal(t, int64(500), m.get("events.acked"))

	pull2 := zmq4.NewPull(t.Context())
	defer pull2.Close()
	require.NoError(t, pull2.Dial(ep))
	waitPeers(t, c, 2)
	assert.Equal(t, outest.BatchACK, publish(t, c, numbered(500, 100)...)[0].Tag)
	a, b := recvN(t, pull, 50), recvN(t, pull2, 50)
	all := append(idsOf(a), idsOf(b)...)
	sort.Ints(all)
	assert.Equal(t, seq(500, 100), all, "each event exactly once over the two peers")
	assert.Equal(t, int64(600), m.get("events.acked"))
	assert.Equal(t, int64(0), m.get("events.dropped"))
}

// TestPushHoldsWithoutPeer: with no PULL peer (none yet, or the only one
// gone), a batch is not ACKed: its events go back to libbeat after
// send_timeout, counted as failed, and arrive once a peer connects.
func TestPushHoldsWithoutPeer(t *testing.T) {
	c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "mode: push", "send_timeout: 200ms"))
	ep := c.boundEndpoint()

	sig := publish(t, c, numbered(0, 10)...)[0]
	assert.Equal(t, outest.BatchRetryEvents, sig.Tag)
	assert.Equal(t, seq(0, 10), idsOfEvents(sig))
	assert.Equal(t, int64(10), m.get("events.failed"))
	assert.Equal(t, int64(0), m.get("events.acked"))
	assert.Equal(t, int64(0), m.get("events.dropped"))

	pull := zmq4.NewPull(t.Context())
	require.NoError(t, pull.Dial(ep))
	waitPeers(t, c, 1)
	assert.Equal(t, outest.BatchACK, publish(t, c, numbered(0, 10)...)[0].Tag)
	assert.Equal(t, seq(0, 10), idsOf(recvN(t, pull, 10)))

	// The peer leaves: zmq4's own PUSH socket would go on returning nil
	// for sends that reach nobody; this output holds the events.
	require.NoError(t, pull.Close())
	waitPeers(t, c, 0)
	sig = publish(t, c, numbered(10, 5)...)[0]
	assert.Equal(t, outest.BatchRetryEvents, sig.Tag)
	assert.Equal(t, seq(10, 5), idsOfEvents(sig))

	pull2 := zmq4.NewPull(t.Context())
	defer pull2.Close()
	require.NoError(t, pull2.Dial(ep))
	waitPeers(t, c, 1)
	assert.Equal(t, outest.BatchACK, publish(t, c, numbered(10, 5)...)[0].Tag)
	assert.Equal(t, seq(10, 5), idsOf(recvN(t, pull2, 5)))
	assert.Equal(t, int64(15), m.get("events.acked"))
	assert.Equal(t, int64(15), m.get("events.failed"))
}

// TestPushConnect: with bind: false the output connects to a PULL peer
// that binds, and reconnects after the peer restarts.
func TestPushConnect(t *testing.T) {
	pull := zmq4.NewPull(t.Context())
	require.NoError(t, pull.Listen("tcp://127.0.0.1:0"))
	ep := "tcp://" + pull.Addr().String()
	c, _ := newTestClient(t, yamlFor(ep, "mode: push", "bind: false"))
	waitPeers(t, c, 1)
	assert.Equal(t, outest.BatchACK, publish(t, c, numbered(0, 20)...)[0].Tag)
	assert.Equal(t, seq(0, 20), idsOf(recvN(t, pull, 20)))

	require.NoError(t, pull.Close())
	waitPeers(t, c, 0)
	pull = zmq4.NewPull(t.Context())
	defer pull.Close()
	require.NoError(t, pull.Listen(ep))
	waitPeers(t, c, 1)
	assert.Equal(t, outest.BatchACK, publish(t, c, numbered(20, 5)...)[0].Tag)
	assert.Equal(t, seq(20, 5), idsOf(recvN(t, pull, 5)))
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

// TestPushStalledPeer: a PULL peer that stops reading is cut off after
// send_timeout; the events it did not take go back to libbeat (none is
// ACKed unwritten), and the ones written before count as acked.
func TestPushStalledPeer(t *testing.T) {
	c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "mode: push", "send_timeout: 500ms"))
	conn, err := net.Dial("tcp", c.socket().ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = zmq4.Open(conn, null.Security(), zmq4.Pull, nil, false, nil)
	require.NoError(t, err)
	waitPeers(t, c, 1)

	pad := strings.Repeat("x", 256<<10)
	evs := numbered(0, 200)
	for i := range evs {
		evs[i].Fields["pad"] = pad
	}
	sig := publish(t, c, evs...)[0]
	require.Equal(t, outest.BatchRetryEvents, sig.Tag)
	retried := idsOfEvents(sig)
	require.NotEmpty(t, retried)
	written := 200 - len(retried)
	assert.Equal(t, seq(written, len(retried)), retried, "the events not written, in order")
	assert.Equal(t, int64(written), m.get("events.acked"))
	assert.Equal(t, int64(len(retried)), m.get("events.failed"))
	assert.Equal(t, int64(1), m.get("write.errors"))
	assert.Zero(t, m.get("events.dropped"))
	t.Logf("a PULL peer that reads nothing took %d events of 256 KiB before it was cut off", written)
}
