package bpfiter

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// openKernel opens the bpf source, or skips the test when the host lacks
// what it needs: the privilege, BTF or the tcp iterator. Any other
// failure, the verifier's refusal of the program first, fails the test.
func openKernel(t testing.TB) *Source {
	t.Helper()
	src, err := Open()
	kerneltest.RequireBPF(t, err)
	t.Cleanup(func() { src.Close() })
	return src
}

func openNetlink(t testing.TB) *netlink.Source {
	t.Helper()
	nl, err := netlink.Open(netlink.Options{})
	kerneltest.RequireNetlink(t, err)
	t.Cleanup(func() { nl.Close() })
	return nl
}

// sameAsNetlink polls both sources until the test's sockets in each agree
// and settled says they are in the states the test waits for (sockets
// being closed move through states between the two reads), then returns
// them. It polls in the test's goroutine rather than with Eventually,
// whose condition can still be running on the source (not safe for
// concurrent use) when it gives up.
func sameAsNetlink(t *testing.T, src *Source, lb *sockettest.Loopback, settled func([]model.Socket) bool) []model.Socket {
	t.Helper()
	nl := openNetlink(t)
	var fromBPF, fromNL []model.Socket
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		a, err := src.Sockets(context.Background(), nil)
		require.NoError(t, err, "bpf")
		b, err := nl.Sockets(context.Background(), nil)
		require.NoError(t, err, "netlink")
		fromBPF, fromNL = lb.Ours(a), lb.Ours(b)
		if assert.ObjectsAreEqual(fromNL, fromBPF) && settled(fromBPF) || time.Now().After(deadline) {
			break
		}
	}
	require.Equal(t, fromNL, fromBPF, "bpf and netlink disagree")
	require.True(t, settled(fromBPF), "sockets never settled: %+v", fromBPF)
	assert.Zero(t, src.Skipped(), "records that did not decode")
	return fromBPF
}

func countState(sockets []model.Socket, st model.State) int {
	n := 0
	for _, s := range sockets {
		if s.State == st {
			n++
		}
	}
	return n
}

func port(a net.Addr) uint16 { return a.(*net.TCPAddr).AddrPort().Port() }

// TestKernelSameSocketsAsNetlink compares the test's sockets as both
// sources list them: listeners on 127.0.0.1, ::1 and a dual-stack [::],
// connections over each (IPv4 through the dual-stack listener is held
// IPv4-mapped by the kernel), an IPv6 listener bound to ::ffff:127.0.0.1
// and a TIME_WAIT socket.
func TestKernelSameSocketsAsNetlink(t *testing.T) {
	src := openKernel(t)
	lb := sockettest.New(t)
	dual := lb.Families()
	// An IPv6 socket bound to a mapped address: its remote end is ::.
	boundMapped := listenRaw(t, lb, &unix.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}, 8)
	lb.Connect(boundMapped, "127.0.0.1", 1)
	// The side that closes first keeps a TIME_WAIT socket.
	lb.Conns[0].Close()
	lb.Conns[1].Close()

	got := sameAsNetlink(t, src, lb, func(s []model.Socket) bool {
		return sockettest.HasState(s, model.StateTimeWait) && len(s) == 4+2*10-1
	})
	// 4 listeners, 10 connections of 2 sockets, one of which is gone and
	// its peer in TIME_WAIT.
	assert.Equal(t, 4, countState(got, model.StateListen))
	assert.Equal(t, 1, countState(got, model.StateTimeWait))
	assert.Equal(t, 2*10-2, countState(got, model.StateEstablished))
	mapped, six := 0, 0
	euid := uint32(os.Geteuid())
	for _, s := range got {
		assert.False(t, s.LocalIP.Is4In6() || s.RemoteIP.Is4In6(), "mapped address in %+v", s)
		if s.LocalPort == port(boundMapped.Addr()) && s.State == model.StateListen {
			assert.Equal(t, netip.MustParseAddr("127.0.0.1"), s.LocalIP, "unmapped")
			assert.Equal(t, netip.IPv6Unspecified(), s.RemoteIP, "an IPv6 socket's remote end")
		} else {
			assert.Equal(t, s.LocalIP.Is4(), s.RemoteIP.Is4(), "one family in %+v", s)
		}
		if s.State == model.StateTimeWait {
			assert.Zero(t, s.Inode)
			assert.Zero(t, s.UID)
			assert.Equal(t, port(lb.Conns[0].LocalAddr()), s.LocalPort, "the client closed first")
			continue
		}
		assert.NotZero(t, s.Inode, "open socket %+v", s)
		assert.Equal(t, euid, s.UID, "open socket %+v", s)
		if (s.LocalPort == port(dual.Addr()) || s.LocalPort == port(boundMapped.Addr())) && s.LocalIP.Is4() {
			mapped++ // IPv6 sockets with IPv4-mapped addresses
		}
		if s.LocalIP.Is6() && !s.LocalIP.IsUnspecified() {
			assert.Equal(t, netip.IPv6Loopback(), s.LocalIP)
			six++
		}
	}
	assert.Equal(t, 2+2, mapped, "two accepted by [::], the mapped-bound listener and its one, unmapped")
	assert.Equal(t, 1+2*3+2, six, "::1 listener and sockets")
}

// listenRaw listens on addr, an AF_INET or AF_INET6 socket address, with
// a listen(2) backlog of its own (the net package always asks for
// somaxconn, and cannot bind an IPv6 socket to a mapped address).
func listenRaw(t *testing.T, lb *sockettest.Loopback, addr unix.Sockaddr, backlog int) net.Listener {
	t.Helper()
	family := unix.AF_INET
	if _, ok := addr.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	require.NoError(t, unix.Bind(fd, addr))
	require.NoError(t, unix.Listen(fd, backlog))
	ln, err := net.FileListener(f)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	lb.Mark(ln.Addr().(*net.TCPAddr).AddrPort())
	return ln
}

// TestKernelPendingConnections compares connections the listening program
// has not taken yet: established in the accept queue (no file: inode 0),
// pending ones the kernel holds as request socks (TCP_DEFER_ACCEPT keeps
// the final bare ACK from completing them: SYN_RECV, uid and inode 0), and
// clients stuck in SYN_SENT because the accept queue is full.
func TestKernelPendingConnections(t *testing.T) {
	src := openKernel(t)
	lb := sockettest.New(t)

	// backlog 1: the queue holds two connections, the third SYN is dropped.
	full := listenRaw(t, lb, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, 1)
	queued := []net.Conn{lb.Dial(full, "127.0.0.1"), lb.Dial(full, "127.0.0.1")}
	ctx, cancel := context.WithCancel(context.Background())
	dialDone := make(chan struct{})
	t.Cleanup(func() { cancel(); <-dialDone })
	go func() {
		defer close(dialDone)
		var d net.Dialer
		if c, err := d.DialContext(ctx, "tcp4", full.Addr().String()); err == nil {
			c.Close() // the queue had room after all: the count below fails
		}
	}()

	var deferred []net.Conn
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln := lb.Listen("tcp", addr)
		sockettest.SetTCPOption(t, ln.(*net.TCPListener), unix.TCP_DEFER_ACCEPT, 60)
		host := "127.0.0.1"
		if ln.Addr().(*net.TCPAddr).IP.To4() == nil {
			host = "::1"
		}
		deferred = append(deferred, lb.Dial(ln, host), lb.Dial(ln, host))
	}

	got := sameAsNetlink(t, src, lb, func(s []model.Socket) bool {
		return countState(s, model.StateSynSent) == 1 && countState(s, model.StateSynRecv) == 4
	})
	euid := uint32(os.Geteuid())
	clients := map[uint16]bool{}
	for _, c := range append(queued, deferred...) {
		clients[port(c.LocalAddr())] = true
	}
	var est, unaccepted, synRecv int
	for _, s := range got {
		switch {
		case s.State == model.StateListen:
		case s.State == model.StateSynSent:
			assert.Equal(t, port(full.Addr()), s.RemotePort)
			assert.NotZero(t, s.Inode)
			assert.Equal(t, euid, s.UID)
		case s.State == model.StateSynRecv:
			synRecv++
			assert.True(t, clients[s.RemotePort], "request sock of a test client: %+v", s)
			assert.Zero(t, s.UID, "request sock %+v", s)
			assert.Zero(t, s.Inode, "request sock %+v", s)
		case s.State == model.StateEstablished && clients[s.LocalPort]:
			est++
			assert.NotZero(t, s.Inode, "client %+v", s)
			assert.Equal(t, euid, s.UID, "client %+v", s)
		case s.State == model.StateEstablished:
			unaccepted++
			assert.Equal(t, port(full.Addr()), s.LocalPort)
			assert.Zero(t, s.Inode, "unaccepted %+v", s)
			assert.Equal(t, euid, s.UID, "unaccepted %+v: the listener's owner", s)
		default:
			t.Errorf("unexpected socket %+v", s)
		}
	}
	assert.Equal(t, 3, countState(got, model.StateListen))
	assert.Equal(t, 6, est, "clients that completed the handshake")
	assert.Equal(t, 2, unaccepted, "queued, never accepted")
	assert.Equal(t, 4, synRecv, "deferred, IPv4 and IPv6")
	assert.Len(t, got, 3+6+2+4+1)
}

// TestKernelFinWait2 compares the three ways a client that closed first
// waits for a server that does not close: a half-closed socket still held
// by its process, an orphaned full socket (TCP_LINGER2 longer than the
// TIME_WAIT length keeps it one) and a timewait sock with substate
// FIN_WAIT2 (what close gives with the default tcp_fin_timeout of 60 s).
func TestKernelFinWait2(t *testing.T) {
	src := openKernel(t)
	lb := sockettest.New(t)
	ln := lb.Listen("tcp4", "127.0.0.1:0")
	lb.Connect(ln, "127.0.0.1", 3)
	halfClosed, orphan, timewait := lb.Conns[0], lb.Conns[2], lb.Conns[4]

	require.NoError(t, halfClosed.(*net.TCPConn).CloseWrite())
	sockettest.SetTCPOption(t, orphan.(*net.TCPConn), unix.TCP_LINGER2, 120)
	require.NoError(t, orphan.Close())
	require.NoError(t, timewait.Close())

	got := sameAsNetlink(t, src, lb, func(s []model.Socket) bool {
		return countState(s, model.StateFinWait2) == 3 && countState(s, model.StateCloseWait) == 3
	})
	require.Len(t, got, 1+3+3)
	byPort := map[uint16]model.Socket{}
	for _, s := range got {
		byPort[s.LocalPort] = s
	}
	hc := byPort[port(halfClosed.LocalAddr())]
	assert.Equal(t, model.StateFinWait2, hc.State)
	assert.Equal(t, sockettest.Inode(t, halfClosed.(*net.TCPConn)), hc.Inode, "the half-closed socket's file")
	for _, c := range []net.Conn{orphan, timewait} {
		s := byPort[port(c.LocalAddr())]
		assert.Equal(t, model.StateFinWait2, s.State)
		assert.Zero(t, s.Inode, "no file holds %+v", s)
	}
	// As root the orphan's uid is 0 too; TestKernelOtherUID tells them apart.
}

// TestKernelUDP lists the test's UDP sockets through the udp iterator:
// bound on 127.0.0.1, ::1 (IPv6 only) and [::] (dual-stack), clients
// connected to each (one through an IPv4-mapped address), a connected
// socket on a listener's port: what the test opened, as netlink and
// procfs list them, every record decoded.
func TestKernelUDP(t *testing.T) {
	src := openKernel(t)
	require.NotNil(t, src.udp, "the udp iterator is attached by default")
	lb := sockettest.New(t)
	u := lb.UDPFamilies()
	got := sameAsNetlink(t, src, lb, func(s []model.Socket) bool { return len(s) == sockettest.UDPCount })
	assert.Equal(t, u.Want(t), got)

	pf, err := procfs.Open("/proc")
	require.NoError(t, err)
	fromPF, err := pf.Sockets(context.Background(), nil)
	require.NoError(t, err)
	assert.Equal(t, lb.Ours(fromPF), got, "bpf and procfs disagree")
	lb.CheckReuse(src, sockettest.UDPCount, nil)
}

// TestKernelTransports: a transport left out has no program loaded and
// none of its sockets listed.
func TestKernelTransports(t *testing.T) {
	openKernel(t) // skips where the programs cannot be loaded
	lb := sockettest.New(t)
	lb.UDPFamilies()
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 2)
	for _, tc := range []struct {
		only model.Transport
		ours int
	}{{model.TCP, 5}, {model.UDP, sockettest.UDPCount}} {
		t.Run(tc.only.String(), func(t *testing.T) {
			src, err := OpenWith(Options{Transports: model.TransportsOf(tc.only)})
			require.NoError(t, err)
			defer src.Close()
			assert.Equal(t, tc.only == model.TCP, src.tcp != nil, "tcp iterator attached")
			assert.Equal(t, tc.only == model.UDP, src.udp != nil, "udp iterator attached")
			got, err := src.Sockets(context.Background(), nil)
			require.NoError(t, err)
			for _, s := range got {
				require.Equal(t, tc.only, s.Transport, "%+v", s)
			}
			assert.Len(t, lb.Ours(got), tc.ours)
		})
	}
}
