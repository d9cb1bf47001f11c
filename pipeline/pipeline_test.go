package pipeline

import (
	"context"
	"net"
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
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// TestPollLoopback runs the pipeline as the agent builds it over each
// forced socket source on the real kernel: the test's listener, its inbound
// peer and its outbound client come out as events owned by this process,
// and the counters in the registry say what the poll saw.
func TestPollLoopback(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	// Accepted, so that the inbound end has an owner too.
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	for _, source := range []string{connections.Netlink, connections.ProcFS} {
		t.Run(source, func(t *testing.T) {
			cfg := config.Default()
			cfg.SocketSource = source
			reg := monitoring.NewRegistry()
			p, err := New(Options{Config: cfg, Metrics: reg})
			require.NoError(t, err)
			defer p.Close()
			assert.Equal(t, source, p.SourceName())

			var events []beat.Event
			stats, err := p.Poll(context.Background(), time.Now(), func(e beat.Event) { events = append(events, e) })
			require.NoError(t, err)

			kinds := map[string]bool{}
			for _, e := range events {
				lport, _ := e.Fields.GetValue("local_port")
				rport, _ := e.Fields.GetValue("remote_port")
				if lport != port && rport != port {
					continue
				}
				dir, err := e.Fields.GetValue("connbeat.direction")
				require.NoError(t, err)
				pid, err := e.Fields.GetValue("local_process.pid")
				require.NoError(t, err, "the test's sockets are joined to this process: %v", e.Fields)
				assert.EqualValues(t, os.Getpid(), pid)
				kinds[dir.(string)] = true
			}
			assert.Equal(t, map[string]bool{"listening": true, "inbound": true, "outbound": true}, kinds)

			snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
			assert.Equal(t, int64(1), snap.Ints["polls"])
			assert.Equal(t, int64(stats.Sockets), snap.Ints["sockets"])
			assert.Equal(t, int64(stats.Sockets), snap.Ints["socket_source."+source+".sockets"])
			assert.Equal(t, int64(len(events)), snap.Ints["reports"])
			assert.Equal(t, int64(stats.Procs.Processes), snap.Ints["procs.processes"])
			assert.Positive(t, snap.Ints["dedup.keys"])

			// Within the window the test's sockets are not reported again
			// (other processes on the host may open new ones meanwhile).
			var again []beat.Event
			_, err = p.Poll(context.Background(), time.Now(), func(e beat.Event) {
				lport, _ := e.Fields.GetValue("local_port")
				rport, _ := e.Fields.GetValue("remote_port")
				if lport == port || rport == port {
					again = append(again, e)
				}
			})
			require.NoError(t, err)
			assert.Empty(t, again)
			snap = monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
			assert.Equal(t, int64(2), snap.Ints["polls"])
		})
	}
}

// TestPollErrorsCounted makes the source fail: the poll and the source
// count the error.
func TestPollErrorsCounted(t *testing.T) {
	cfg := config.Default()
	cfg.SocketSource = connections.ProcFS
	cfg.ProcPath = t.TempDir() // no net/tcp under it
	cfg.ExposeProcessInfo = false
	reg := monitoring.NewRegistry()
	p, err := New(Options{Config: cfg, Metrics: reg})
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Poll(context.Background(), time.Now(), func(beat.Event) {})
	require.ErrorContains(t, err, "reading sockets from procfs")
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.Equal(t, int64(1), snap.Ints["poll_errors"])
	assert.Equal(t, int64(1), snap.Ints["socket_source.procfs.errors"])
}

// newNetlink returns a pipeline over the netlink source and its counters.
func newNetlink(t *testing.T) (*Pipeline, *monitoring.Registry) {
	t.Helper()
	cfg := config.Default()
	cfg.SocketSource = connections.Netlink
	reg := monitoring.NewRegistry()
	p, err := New(Options{Config: cfg, Metrics: reg})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p, reg
}

// TestPollCancelledNotCountedAsError: a poll cancelled by the agent's stop
// returns context.Canceled, which neither the poll nor the source counts as
// an error.
func TestPollCancelledNotCountedAsError(t *testing.T) {
	p, reg := newNetlink(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Poll(ctx, time.Now(), func(beat.Event) {})
	require.ErrorIs(t, err, context.Canceled)
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.Equal(t, int64(1), snap.Ints["polls"])
	assert.Zero(t, snap.Ints["poll_errors"])
	assert.Zero(t, snap.Ints["socket_source.netlink.errors"])
}

func TestNewRefusesUnknownSource(t *testing.T) {
	cfg := config.Default()
	cfg.SocketSource = "kprobe"
	_, err := New(Options{Config: cfg})
	require.ErrorContains(t, err, `unknown socket source "kprobe"`)
}

// TestRecordsEveryPoll: Records hands over every classified socket of each
// poll, joined to its owner, and leaves dedup alone: the second call sees
// the same sockets again where Poll would have reported nothing new.
func TestRecordsEveryPoll(t *testing.T) {
	l := sockettest.New(t)
	ln := l.Listen("tcp4", "127.0.0.1:0")
	l.Connect(ln, "127.0.0.1", 1)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	p, reg := newNetlink(t)

	for poll := 1; poll <= 2; poll++ {
		records, stats, err := p.Records(context.Background())
		require.NoError(t, err)
		assert.Equal(t, stats.Sockets+stats.Captured, len(records), "one record a socket, those the event capture added included")
		got := map[model.Direction]int{}
		for _, r := range records {
			if r.Socket.LocalPort != port && r.Socket.RemotePort != port {
				continue
			}
			if r.Socket.State == model.StateTimeWait {
				// Another test's closed connection, at a port this test's
				// listener reuses: this test's sockets are all open.
				continue
			}
			require.NotNil(t, r.Process, "poll %d: %+v joined to this process", poll, r.Socket)
			assert.EqualValues(t, os.Getpid(), r.Process.PID)
			got[r.Direction]++
		}
		assert.Equal(t, map[model.Direction]int{model.Listening: 1, model.Inbound: 1, model.Outbound: 1}, got, "poll %d", poll)
	}
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.Equal(t, int64(2), snap.Ints["polls"])
	assert.Zero(t, snap.Ints["dedup.keys"], "Records does not fill the dedup window")
	assert.Zero(t, snap.Ints["reports"])
}

// TestRecordsUDP runs the pipeline over each socket source on the real
// kernel beside the test's UDP sockets (bound on 127.0.0.1, ::1 and [::],
// clients connected to each, a connected socket on 127.0.0.1's listener
// port): the bound ones are listeners, the socket on the listener's port
// inbound, the clients outbound, each joined to this process; with
// protocols [tcp] none of them is read.
func TestRecordsUDP(t *testing.T) {
	lb := sockettest.New(t)
	u := lb.UDPFamilies()
	inbound := sockettest.UDPWant(t, u.Inbound).Inode
	listeners := map[uint64]bool{}
	for _, c := range []*net.UDPConn{u.V4, u.V6, u.Dual} {
		listeners[sockettest.UDPWant(t, c).Inode] = true
	}
	for _, source := range []string{connections.ProcFS, connections.Netlink, connections.BPF} {
		for _, protocols := range [][]string{{"tcp", "udp"}, {"tcp"}} {
			t.Run(source+"/"+strings.Join(protocols, ","), func(t *testing.T) {
				cfg := config.Default()
				cfg.SocketSource = source
				cfg.Protocols = protocols
				p, err := New(Options{Config: cfg})
				if source == connections.BPF {
					kerneltest.RequireBPF(t, err)
				}
				require.NoError(t, err)
				defer p.Close()
				records, _, err := p.Records(context.Background())
				require.NoError(t, err)
				var ours []model.Record
				for _, r := range records {
					if len(lb.Ours([]model.Socket{r.Socket})) == 1 {
						ours = append(ours, r)
					}
				}
				if len(protocols) == 1 {
					assert.Empty(t, ours, "UDP sockets with protocols [tcp]")
					return
				}
				require.Len(t, ours, sockettest.UDPCount)
				for _, r := range ours {
					want := model.Outbound
					switch {
					case listeners[r.Socket.Inode]:
						want = model.Listening
					case r.Socket.Inode == inbound:
						want = model.Inbound
					}
					assert.Equal(t, want, r.Direction, "%+v", r.Socket)
					assert.Equal(t, model.UDP, r.Socket.Transport)
					require.NotNil(t, r.Process, "owner of %+v", r.Socket)
					assert.EqualValues(t, os.Getpid(), r.Process.PID)
				}
			})
		}
	}
}
