package pipeline

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/monitoring"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/model"
)

// endedQueue hands over the flows queued since its last call, as the
// event capture does, and counts the calls.
type endedQueue struct {
	pending []model.ConnFlow
	calls   int
}

func (q *endedQueue) Flows(dst []model.ConnFlow) []model.ConnFlow {
	q.calls++
	dst = append(dst, q.pending...)
	q.pending = nil
	return dst
}

func (q *endedQueue) ReadFlows(dst []model.ConnFlow) []model.ConnFlow { return q.Flows(dst) }

// endedLoopback opens and closes a real loopback connection and returns
// its client end's flow, as a capture would hand it over.
func endedLoopback(t *testing.T) model.ConnFlow {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	began := time.Now()
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	return model.ConnFlow{
		Socket: model.Socket{
			LocalIP: local.Addr(), LocalPort: local.Port(),
			RemoteIP: remote.Addr(), RemotePort: remote.Port(),
		},
		Direction: model.Outbound,
		Process:   &model.Process{PID: int32(os.Getpid()), Name: "pipeline.test"},
		Start:     began, End: time.Now(),
		BytesSent: 5, SegsSent: 3, SegsReceived: 2, Ended: model.EndFIN,
	}
}

// TestPollPublishesFlows: with flow_events on, each poll publishes one
// flow event per connection that ended since the last, once, counted in
// the registry; with it off the capture's flows are not even asked for.
func TestPollPublishesFlows(t *testing.T) {
	ended := endedLoopback(t)
	for _, on := range []bool{true, false} {
		cfg := config.Default()
		cfg.SocketSource = connections.ProcFS
		cfg.FlowEvents = on
		q := &endedQueue{pending: []model.ConnFlow{ended}}
		reg := monitoring.NewRegistry()
		p, err := New(Options{Config: cfg, Metrics: reg, Flows: q})
		require.NoError(t, err)
		assert.Equal(t, on, p.FlowEvents())

		var flows []beat.Event
		collect := func(e beat.Event) {
			if k, _ := e.Fields.GetValue("connbeat.kind"); k == "flow" {
				flows = append(flows, e)
			}
		}
		stats, err := p.Poll(context.Background(), time.Now(), collect)
		require.NoError(t, err)
		if !on {
			assert.Empty(t, flows)
			assert.Zero(t, q.calls, "flow_events off: the capture's flows are left alone")
			assert.Zero(t, stats.Flows)
			require.NoError(t, p.Close())
			continue
		}
		require.Len(t, flows, 1)
		assert.Equal(t, 1, stats.Flows)
		f := flows[0].Fields
		for key, want := range map[string]any{
			"connbeat.direction":        "outbound",
			"local_ip":                  "127.0.0.1",
			"local_port":                ended.Socket.LocalPort,
			"remote_port":               ended.Socket.RemotePort,
			"local_process.pid":         int32(os.Getpid()),
			"connbeat.flow.bytes_sent":  uint64(5),
			"connbeat.flow.ended":       "fin",
			"connbeat.flow.segs_sent":   uint64(3),
			"connbeat.flow.retransmits": uint32(0),
		} {
			got, err := f.GetValue(key)
			require.NoError(t, err, key)
			assert.Equal(t, want, got, key)
		}

		// Handed over once: the next poll has nothing new.
		flows = nil
		_, err = p.Poll(context.Background(), time.Now(), collect)
		require.NoError(t, err)
		assert.Empty(t, flows)
		assert.Equal(t, 2, q.calls)
		snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
		assert.Equal(t, int64(1), snap.Ints["flow_events"])
		require.NoError(t, p.Close())
	}
}

// TestPollFlowsBufferBounded: a burst larger than the kept buffer is
// published whole, and the buffer is not kept for the next poll.
func TestPollFlowsBufferBounded(t *testing.T) {
	cfg := config.Default()
	cfg.SocketSource = connections.ProcFS
	cfg.FlowEvents = true
	one := endedLoopback(t)
	q := &endedQueue{}
	for range maxFlowBuffer + 1 {
		q.pending = append(q.pending, one)
	}
	p, err := New(Options{Config: cfg, Flows: q})
	require.NoError(t, err)
	defer p.Close()
	n := 0
	stats, err := p.Poll(context.Background(), time.Now(), func(e beat.Event) {
		if k, _ := e.Fields.GetValue("connbeat.kind"); k == "flow" {
			n++
		}
	})
	require.NoError(t, err)
	assert.Equal(t, maxFlowBuffer+1, n)
	assert.Equal(t, maxFlowBuffer+1, stats.Flows)
	assert.Nil(t, p.ended, "a burst's buffer is dropped")
	assert.Equal(t, netip.MustParseAddr("127.0.0.1"), one.Socket.RemoteIP)
}

// TestPollPublishesCapturedFlows: with the real event capture, a
// connection a child process makes and closes between two polls comes out
// of Poll as two flow events, one per end, each with its process and the
// payload bytes, published once.
func TestPollPublishesCapturedFlows(t *testing.T) {
	p := newEvents(t, nil)
	require.True(t, p.FlowEvents())
	ln, err := net.Listen("tcp4", "127.0.0.4:0")
	require.NoError(t, err)
	defer ln.Close()
	now := time.Now()
	_, err = p.Poll(context.Background(), now, func(beat.Event) {})
	require.NoError(t, err)

	lport := uint16(ln.Addr().(*net.TCPAddr).Port)
	pid, cport := dial(t, ln)
	byDir := map[string]beat.Event{}
	require.Eventually(t, func() bool {
		now = now.Add(time.Second)
		_, err := p.Poll(context.Background(), now, func(e beat.Event) {
			if k, _ := e.Fields.GetValue("connbeat.kind"); k != "flow" {
				return
			}
			l, _ := e.Fields.GetValue("local_port")
			r, _ := e.Fields.GetValue("remote_port")
			// Both ports: another test's connection may have had
			// the client's a moment ago.
			if (l == cport && r == lport) || (l == lport && r == cport) {
				dir, _ := e.Fields.GetValue("connbeat.direction")
				_, dup := byDir[dir.(string)]
				assert.False(t, dup, "a flow is published once")
				byDir[dir.(string)] = e
			}
		})
		require.NoError(t, err)
		return len(byDir) == 2
	}, 5*time.Second, 50*time.Millisecond)
	for dir, want := range map[string]struct {
		pid      int
		sent     uint64
		received uint64
	}{"outbound": {pid, 4, 0}, "inbound": {os.Getpid(), 0, 4}} {
		f := byDir[dir].Fields
		got, _ := f.GetValue("local_process.pid")
		assert.EqualValues(t, want.pid, got, dir)
		sent, _ := f.GetValue("connbeat.flow.bytes_sent")
		received, _ := f.GetValue("connbeat.flow.bytes_received")
		assert.Equal(t, []any{want.sent, want.received}, []any{sent, received}, dir)
	}
}

// TestPublishReadFlows: between two polls, PublishReadFlows publishes the
// flows the capture's reader has taken in, each end with its process,
// and counts them; the next poll does not publish them again.
func TestPublishReadFlows(t *testing.T) {
	reg := monitoring.NewRegistry()
	p := newEvents(t, reg)
	ln, err := net.Listen("tcp4", "127.0.0.5:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = p.Poll(context.Background(), time.Now(), func(beat.Event) {})
	require.NoError(t, err)

	lport := uint16(ln.Addr().(*net.TCPAddr).Port)
	pid, cport := dial(t, ln)
	pids := map[string]any{}
	mine := func(e beat.Event) (string, bool) {
		if k, _ := e.Fields.GetValue("connbeat.kind"); k != "flow" {
			return "", false
		}
		l, _ := e.Fields.GetValue("local_port")
		r, _ := e.Fields.GetValue("remote_port")
		dir, _ := e.Fields.GetValue("connbeat.direction")
		return dir.(string), (l == cport && r == lport) || (l == lport && r == cport)
	}
	require.Eventually(t, func() bool {
		require.NoError(t, p.PublishReadFlows(context.Background(), time.Now(), func(e beat.Event) {
			if dir, ok := mine(e); ok {
				pids[dir], _ = e.Fields.GetValue("local_process.pid")
			}
		}))
		return len(pids) == 2
	}, 5*time.Second, 50*time.Millisecond, "the capture's reader takes records in at least once a second")
	assert.EqualValues(t, pid, pids["outbound"])
	assert.EqualValues(t, os.Getpid(), pids["inbound"])
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.GreaterOrEqual(t, snap.Ints["flow_events"], int64(2))

	_, err = p.Poll(context.Background(), time.Now(), func(e beat.Event) {
		_, ok := mine(e)
		assert.False(t, ok, "published again by the poll")
	})
	require.NoError(t, err)
}

// TestPublishCaptured: a burst of connections, more than earlyPollAt
// ends, is published between two polls by PublishCaptured, both ends of
// each with the process that made it; what is left below earlyPollAt
// goes out with the next poll.
func TestPublishCaptured(t *testing.T) {
	reg := monitoring.NewRegistry()
	p := newEvents(t, reg)
	ln, err := net.Listen("tcp4", "127.0.0.7:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			s.Close()
		}
	}()
	_, err = p.Poll(context.Background(), time.Now(), func(beat.Event) {})
	require.NoError(t, err)
	pollsBefore := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false).Ints["polls"]

	// Each from an address of its own, so that each is a key of its own:
	// the burst is as many events.
	const conns = earlyPollAt/2 + 100
	for i := range conns {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 8, byte(i>>8), byte(i))}}
		c, err := d.Dial("tcp4", ln.Addr().String())
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	lport := uint16(ln.Addr().(*net.TCPAddr).Port)
	seen := map[string]int{}
	early := 0
	collect := func(counted *int) func(beat.Event) {
		return func(e beat.Event) {
			if k, _ := e.Fields.GetValue("connbeat.kind"); k != "connection" {
				return
			}
			l, _ := e.Fields.GetValue("local_port")
			r, _ := e.Fields.GetValue("remote_port")
			ip, _ := e.Fields.GetValue("local_ip")
			if l != lport && r != lport {
				return
			}
			dir, _ := e.Fields.GetValue("connbeat.direction")
			if dir == "inbound" {
				ip, _ = e.Fields.GetValue("remote_ip")
			}
			if !strings.HasPrefix(ip.(string), "127.8.") {
				return
			}
			pid, _ := e.Fields.GetValue("local_process.pid")
			assert.EqualValues(t, os.Getpid(), pid)
			seen[dir.(string)]++
			if counted != nil {
				*counted++
			}
		}
	}
	// The reader takes the burst in at least once a second; once 1,024
	// ends or more wait, PublishCaptured takes them. The rest, fewer,
	// wait for the poll.
	require.Eventually(t, func() bool {
		require.NoError(t, p.PublishCaptured(context.Background(), time.Now(), collect(&early)))
		return early > 0
	}, 10*time.Second, 100*time.Millisecond, "published between polls")
	assert.GreaterOrEqual(t, early, earlyPollAt/2, "a burst's worth at once")
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.Greater(t, snap.Ints["polls"], pollsBefore, "counted as polls")
	require.Eventually(t, func() bool {
		_, err := p.Poll(context.Background(), time.Now(), collect(nil))
		require.NoError(t, err)
		return seen["outbound"] == conns && seen["inbound"] == conns
	}, 5*time.Second, 100*time.Millisecond, "every end, once: %v", seen)
}
