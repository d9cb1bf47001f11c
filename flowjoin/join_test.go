package flowjoin

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"

	"github.com/elastic/elastic-agent-libs/monitoring"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), a.AddrPort().Port())
	case *net.UDPAddr:
		return netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), a.AddrPort().Port())
	}
	panic("not an IP address")
}

// flowOf is the flow conntrack makes of a connection from src to dst
// without NAT.
func flowOf(proto uint8, src, dst netip.AddrPort) *model.Flow {
	return &model.Flow{
		Event:    model.FlowNew,
		Original: model.Tuple{Src: src.Addr(), Dst: dst.Addr(), SrcPort: src.Port(), DstPort: dst.Port(), Proto: proto},
		Reply:    model.Tuple{Src: dst.Addr(), Dst: src.Addr(), SrcPort: dst.Port(), DstPort: src.Port(), Proto: proto},
	}
}

// tcpPair listens on host and connects to it once, without accepting.
func tcpPair(t *testing.T, network, host string) (net.Listener, net.Conn) {
	t.Helper()
	lb := sockettest.New(t)
	ln := lb.Listen(network, net.JoinHostPort(host, "0"))
	return ln, lb.Dial(ln, host)
}

func newJoiner(t *testing.T, processes bool) (*Joiner, *monitoring.Registry) {
	t.Helper()
	reg := monitoring.NewRegistry()
	j, err := New(Options{Processes: processes, ProcPath: "/proc", Metrics: reg,
		localAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("192.0.2.99")}, nil }})
	require.NoError(t, err)
	t.Cleanup(func() { j.Close() })
	return j, reg
}

func counters(reg *monitoring.Registry) map[string]int64 {
	return monitoring.CollectFlatSnapshot(reg, monitoring.Full, false).Ints
}

// TestKernelJoin joins flows of the test's own loopback sockets to this
// process: each end as conntrack's tuples name it, TCP and UDP, v4 and v6,
// and an inbound connection not accepted yet through its listener.
func TestKernelJoin(t *testing.T) {
	j, reg := newJoiner(t, true)
	me := int32(os.Getpid())
	remote := netip.MustParseAddrPort("198.51.100.1:4444") // not local

	ln, c := tcpPair(t, "tcp4", "127.0.0.1")
	ln6, c6 := tcpPair(t, "tcp6", "::1")
	usrv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer usrv.Close()
	uc, err := net.Dial("udp4", usrv.LocalAddr().String())
	require.NoError(t, err)
	defer uc.Close()

	flows := []*model.Flow{
		flowOf(6, addrPort(c.LocalAddr()), addrPort(ln.Addr())),
		flowOf(6, addrPort(c6.LocalAddr()), addrPort(ln6.Addr())),
		flowOf(17, addrPort(uc.LocalAddr()), addrPort(usrv.LocalAddr())),
		// From elsewhere to the test's listener and UDP socket: inbound.
		flowOf(6, remote, addrPort(ln.Addr())),
		flowOf(17, remote, addrPort(usrv.LocalAddr())),
		// Through the host: neither end is local.
		flowOf(6, remote, netip.MustParseAddrPort("203.0.113.1:80")),
		// From a local address, but no socket has it.
		flowOf(6, netip.MustParseAddrPort("192.0.2.99:1"), remote),
		// ICMP has no socket to look up.
		{Original: model.Tuple{Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"), Proto: 1},
			Reply: model.Tuple{Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"), Proto: 1}},
	}
	j.Join(context.Background(), flows)

	type result struct {
		Direction model.Direction
		PID       int32
	}
	var got []result
	for _, f := range flows {
		r := result{Direction: f.Direction}
		if f.Process != nil {
			r.PID = f.Process.PID
		}
		got = append(got, r)
	}
	assert.Equal(t, []result{
		{model.Outbound, me}, {model.Outbound, me}, {model.Outbound, me},
		{model.Inbound, me}, {model.Inbound, me},
		{model.Forwarded, 0}, {model.Outbound, 0}, {model.Outbound, 0},
	}, got)
	assert.Equal(t, "flowjoin.test", flows[0].Process.Name)
	m := counters(reg)
	assert.Equal(t, int64(1), m["conntrack.join.refreshes"], "one read of the process table for the batch")
	assert.Zero(t, m["conntrack.join.lookup_errors"])
	// One each: for a connection it does not have, the kernel answers
	// with the listener that would take it.
	assert.Equal(t, int64(6), m["conntrack.join.lookups"], "five sockets and the missing one")

	// The same sockets again: known, no refresh.
	for _, f := range flows {
		f.Process = nil
	}
	j.Join(context.Background(), flows[:3])
	assert.Equal(t, int64(1), counters(reg)["conntrack.join.refreshes"])
	assert.Equal(t, me, flows[2].Process.PID)
}

// TestKernelJoinQueued: the server end of a connection not accepted yet
// has no inode; the listener's owner is the process.
func TestKernelJoinQueued(t *testing.T) {
	j, _ := newJoiner(t, true)
	ln, c := tcpPair(t, "tcp4", "127.0.0.1")
	f := flowOf(6, addrPort(c.LocalAddr()), addrPort(ln.Addr()))
	f.Direction = model.Inbound // as if the client were elsewhere
	s, ok := j.localSocket(f)
	require.True(t, ok)
	assert.Equal(t, model.StateListen, s.State)
}

// TestKernelJoinBudget: a batch whose socket is new waits for the gap
// after the last read of the process table, then reads it: the flow gets
// its process a little later, never at a cost of more than a share of the
// time.
func TestKernelJoinBudget(t *testing.T) {
	j, reg := newJoiner(t, true)
	_, c := tcpPair(t, "tcp4", "127.0.0.1")
	const gap = 300 * time.Millisecond
	j.lastRefresh, j.refreshGap = time.Now(), gap
	f := flowOf(6, addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()))
	start := time.Now()
	j.Join(context.Background(), []*model.Flow{f})
	assert.GreaterOrEqual(t, time.Since(start), gap-10*time.Millisecond, "waited for the gap")
	require.NotNil(t, f.Process)
	assert.Equal(t, int32(os.Getpid()), f.Process.PID)
	m := counters(reg)
	assert.Equal(t, int64(1), m["conntrack.join.refresh_waits"])
	assert.Equal(t, int64(1), m["conntrack.join.refreshes"])
	assert.LessOrEqual(t, j.refreshGap, maxRefreshGap)
	assert.GreaterOrEqual(t, j.refreshGap, minRefreshGap)
}

// TestJoinWithoutProcesses sets directions only.
func TestJoinWithoutProcesses(t *testing.T) {
	j, reg := newJoiner(t, false)
	flows := []*model.Flow{
		flowOf(6, netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")),
		flowOf(6, netip.MustParseAddrPort("198.51.100.1:1"), netip.MustParseAddrPort("192.0.2.99:2")),
		flowOf(6, netip.MustParseAddrPort("198.51.100.1:1"), netip.MustParseAddrPort("203.0.113.1:2")),
		flowOf(6, netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("[2001:db8::1]:2")),
	}
	j.Join(context.Background(), flows)
	var dirs []model.Direction
	for _, f := range flows {
		dirs = append(dirs, f.Direction)
		assert.Nil(t, f.Process)
	}
	assert.Equal(t, []model.Direction{model.Outbound, model.Inbound, model.Forwarded, model.Outbound}, dirs)
	assert.Zero(t, counters(reg)["conntrack.join.lookups"])
}
