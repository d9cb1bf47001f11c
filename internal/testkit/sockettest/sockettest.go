// Package sockettest makes real loopback sockets for the socket sources'
// kernel tests and picks the tests' own sockets out of what a source lists,
// so that sources can be compared with each other on a busy host.
package sockettest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sort"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// Loopback holds the listeners and connections a test made.
type Loopback struct {
	t testing.TB
	// endpoints are the listeners' addresses and those clients reach them
	// at: a socket is the test's when one of its ends is one of these, on
	// the same transport.
	endpoints map[endpoint]bool
	// Conns are the connections Connect made, in pairs: the dialled end,
	// then the accepted end.
	Conns []net.Conn
	// dialled holds the (client, server) addresses of the connections
	// Dial made: a TIME_WAIT socket at one of the endpoints is the test's
	// only when it is one of them, since a listener's port may have been
	// another test's a moment ago, with its closed connections lingering.
	dialled map[[2]netip.AddrPort]bool
}

// endpoint is an address and port of one transport.
type endpoint struct {
	transport model.Transport
	ap        netip.AddrPort
}

// New returns an empty Loopback; what it opens is closed at the end of
// the test.
func New(t testing.TB) *Loopback {
	return &Loopback{t: t, endpoints: map[endpoint]bool{}, dialled: map[[2]netip.AddrPort]bool{}}
}

// Listen listens on network and addr and marks the listener's address as
// the test's; a wildcard listener marks 127.0.0.1 and ::1 at its port.
// The test is skipped when the address cannot be had (no IPv6).
func (l *Loopback) Listen(network, addr string) net.Listener {
	l.t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		l.t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	l.t.Cleanup(func() { ln.Close() })
	l.Mark(ln.Addr().(*net.TCPAddr).AddrPort())
	return ln
}

// Mark makes ap (unmapped) one of the test's TCP endpoints, for a
// listener made otherwise than with Listen; a wildcard address marks
// 127.0.0.1 and ::1 at its port.
func (l *Loopback) Mark(ap netip.AddrPort) { l.MarkTransport(model.TCP, ap) }

// MarkTransport is Mark for a transport.
func (l *Loopback) MarkTransport(t model.Transport, ap netip.AddrPort) {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	l.endpoints[endpoint{t, ap}] = true
	if ap.Addr().IsUnspecified() {
		l.endpoints[endpoint{t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())}] = true
		l.endpoints[endpoint{t, netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())}] = true
	}
}

// Connect dials ln n times at host dial and accepts each connection.
func (l *Loopback) Connect(ln net.Listener, dial string, n int) {
	l.t.Helper()
	for range n {
		c := l.Dial(ln, dial)
		s, err := ln.Accept()
		require.NoError(l.t, err)
		l.t.Cleanup(func() { s.Close() })
		l.Conns = append(l.Conns, c, s)
	}
}

// Dial connects to ln at host dial without accepting: the kernel holds the
// other end in the listener's queue.
func (l *Loopback) Dial(ln net.Listener, dial string) net.Conn {
	l.t.Helper()
	port := ln.Addr().(*net.TCPAddr).Port
	c, err := net.Dial("tcp", net.JoinHostPort(dial, fmt.Sprint(port)))
	require.NoError(l.t, err)
	l.t.Cleanup(func() { c.Close() })
	unmap := func(a net.Addr) netip.AddrPort {
		ap := a.(*net.TCPAddr).AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	l.dialled[[2]netip.AddrPort{unmap(c.LocalAddr()), unmap(c.RemoteAddr())}] = true
	return c
}

// Ours keeps the test's sockets out of sockets, sorted.
func (l *Loopback) Ours(sockets []model.Socket) []model.Socket {
	var out []model.Socket
	for _, s := range sockets {
		local := netip.AddrPortFrom(s.LocalIP, s.LocalPort)
		remote := netip.AddrPortFrom(s.RemoteIP, s.RemotePort)
		if !l.endpoints[endpoint{s.Transport, local}] && !l.endpoints[endpoint{s.Transport, remote}] {
			continue
		}
		if s.State == model.StateTimeWait && len(l.dialled) > 0 &&
			!l.dialled[[2]netip.AddrPort{local, remote}] && !l.dialled[[2]netip.AddrPort{remote, local}] {
			continue // another test's, at a port this test reuses
		}
		out = append(out, s)
	}
	Sort(out)
	return out
}

// Families opens the mix the source comparisons start from: listeners on
// 127.0.0.1, ::1 and dual-stack [::], three connections to each of the
// first two, and to [::] two over IPv4 (which the kernel holds as IPv6
// sockets with IPv4-mapped addresses) and one over ::1: 3 listeners and 18
// connection sockets. Conns[0] and Conns[1] are the first IPv4 pair. It
// returns the dual-stack listener.
func (l *Loopback) Families() net.Listener {
	l.t.Helper()
	v4 := l.Listen("tcp4", "127.0.0.1:0")
	v6 := l.Listen("tcp6", "[::1]:0")
	dual := l.Listen("tcp", "[::]:0")
	l.Connect(v4, "127.0.0.1", 3)
	l.Connect(v6, "::1", 3)
	l.Connect(dual, "127.0.0.1", 2)
	l.Connect(dual, "::1", 1)
	return dual
}

// CheckReuse polls src 20 times into the same slice, then once with a
// cancelled context, which must fail with context.Canceled, and once more,
// which must work: every successful poll lists the test's own want sockets.
// each, when not nil, runs after each of the 20 polls with what it listed.
// Source is what CheckReuse polls: any of connbeat's socket sources.
type Source interface {
	Sockets(context.Context, []model.Socket) ([]model.Socket, error)
}

func (l *Loopback) CheckReuse(src Source, want int, each func([]model.Socket)) {
	l.t.Helper()
	var buf []model.Socket
	for range 20 {
		var err error
		buf, err = src.Sockets(context.Background(), buf[:0])
		require.NoError(l.t, err)
		require.Len(l.t, l.Ours(buf), want)
		if each != nil {
			each(buf)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := src.Sockets(ctx, nil)
	require.ErrorIs(l.t, err, context.Canceled)
	buf, err = src.Sockets(context.Background(), buf[:0])
	require.NoError(l.t, err)
	require.Len(l.t, l.Ours(buf), want)
}

// Inode returns the inode of a connection's or listener's socket file, as
// /proc/PID/fd and the socket sources list it.
func Inode(t testing.TB, c syscall.Conn) uint64 {
	t.Helper()
	var st unix.Stat_t
	onFD(t, c, func(fd int) error { return unix.Fstat(fd, &st) })
	return st.Ino
}

// SetTCPOption sets the IPPROTO_TCP option opt of a connection or listener
// (TCP_LINGER2, TCP_DEFER_ACCEPT, ...) to value.
func SetTCPOption(t testing.TB, c syscall.Conn, opt, value int) {
	t.Helper()
	onFD(t, c, func(fd int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, opt, value) })
}

// onFD runs fn on c's file descriptor and fails the test on any error.
func onFD(t testing.TB, c syscall.Conn, fn func(fd int) error) {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	var ferr error
	require.NoError(t, raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }))
	require.NoError(t, ferr)
}

// Sort orders sockets by transport, local then remote address and port,
// state, uid and inode, so that two sources' lists compare as wholes.
func Sort(s []model.Socket) {
	sort.Slice(s, func(i, j int) bool {
		a, b := s[i], s[j]
		if a.Transport != b.Transport {
			return a.Transport < b.Transport
		}
		if c := a.LocalIP.Compare(b.LocalIP); c != 0 {
			return c < 0
		}
		if a.LocalPort != b.LocalPort {
			return a.LocalPort < b.LocalPort
		}
		if c := a.RemoteIP.Compare(b.RemoteIP); c != 0 {
			return c < 0
		}
		if a.RemotePort != b.RemotePort {
			return a.RemotePort < b.RemotePort
		}
		if a.State != b.State {
			return a.State < b.State
		}
		if a.UID != b.UID {
			return a.UID < b.UID
		}
		return a.Inode < b.Inode
	})
}

// HasState reports whether a socket of sockets is in state st.
func HasState(sockets []model.Socket, st model.State) bool {
	for _, s := range sockets {
		if s.State == st {
			return true
		}
	}
	return false
}

// InNewNetns runs fn on an OS thread of its own that it moves into a new
// network namespace with lo up, and delivers fn's error (or the setup's)
// on the returned channel. Sockets fn creates, and sources it opens or
// polls, are the namespace's. Afterwards the thread goes back to its
// namespace before it is unlocked: the goroutine may run on the process's
// main thread, whose namespace /proc/self/net shows to every thread, and
// which the runtime never ends. If it cannot go back, the thread stays
// locked and ends with the goroutine.
func InNewNetns(fn func() error) <-chan error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("opening this thread's network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		err = LoopbackUp()
		if err == nil {
			err = fn()
		}
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return done
}

// LoopbackUp sets IFF_UP on lo in the calling thread's network namespace.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for ioctl: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	return nil
}
