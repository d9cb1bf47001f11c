package dedup

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

// TestPeerNotInKey: the process at a connection's other end is not part
// of its key. A key whose sockets' peer changes within the window (a
// server's other worker accepts the next connection, a peer restarts) is
// not reported again, and the two ends of one loopback connection stay an
// inbound and an outbound report, not more.
func TestPeerNotInKey(t *testing.T) {
	c := New(time.Minute)
	in := rec(model.Inbound, 10, "127.0.0.1", 80, "127.0.0.1", 0)
	out := rec(model.Outbound, 20, "127.0.0.1", 40000, "127.0.0.1", 80)
	in.Peer, out.Peer = &model.Process{PID: 20}, &model.Process{PID: 10}
	got := c.Filter([]model.Record{in, out}, t0, nil)
	require.Len(t, got, 2)
	assert.Equal(t, int32(20), got[0].Peer.PID, "the report keeps its record's peer")
	assert.Equal(t, int32(10), got[1].Peer.PID)

	in.Peer, out.Peer = &model.Process{PID: 21}, nil
	assert.Empty(t, c.Filter([]model.Record{in, out}, t0.Add(time.Second), nil), "a new peer within the window")

	got = c.Filter([]model.Record{in, out}, t0.Add(time.Minute), nil)
	require.Len(t, got, 2, "reported again once the window has passed")
	assert.Equal(t, int32(21), got[0].Peer.PID, "with the peer it has now")
}
