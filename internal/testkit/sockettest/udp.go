package sockettest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// UDPSockets are the UDP sockets UDPFamilies opens.
type UDPSockets struct {
	// Listeners are bound and unconnected: 127.0.0.1 (with SO_REUSEPORT,
	// see Inbound), ::1 (IPv6 only) and [::] (dual-stack).
	V4, V6, Dual *net.UDPConn
	// Clients are connected: to V4, to V6, to Dual over IPv4 (an AF_INET
	// socket), to Dual over ::1, and to Dual from an AF_INET6 socket
	// connected to ::ffff:127.0.0.1 (the kernel holds IPv4-mapped
	// addresses, which the sources unmap).
	Clients []*net.UDPConn
	// Inbound is connected to Clients[0] from V4's address and port (a
	// second socket bound there with SO_REUSEPORT, as QUIC servers do): a
	// connected socket on a listener's port.
	Inbound *net.UDPConn
}

// UDPCount is how many sockets UDPFamilies opens: 3 listeners, 5 clients
// and the inbound socket.
const UDPCount = 3 + 5 + 1

// UDPFamilies opens the UDP mix the source comparisons start from (see
// UDPSockets) and marks its listeners' addresses as the test's UDP
// endpoints. The test is skipped when IPv6 loopback is missing.
func (l *Loopback) UDPFamilies() *UDPSockets {
	l.t.Helper()
	var u UDPSockets
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	require.NoError(l.t, err)
	u.V4 = l.keepUDP(pc.(*net.UDPConn))
	u.V6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		l.t.Skipf("cannot listen on udp6 [::1]: %v", err)
	}
	l.keepUDP(u.V6)
	u.Dual = l.keepUDP(l.listenUDP("udp", "[::]:0"))
	for _, ln := range []*net.UDPConn{u.V4, u.V6, u.Dual} {
		l.MarkTransport(model.UDP, AddrPort(ln.LocalAddr()))
	}
	dual := AddrPort(u.Dual.LocalAddr()).Port()
	for _, d := range []struct{ network, addr string }{
		{"udp4", u.V4.LocalAddr().String()},
		{"udp6", u.V6.LocalAddr().String()},
		{"udp4", fmt.Sprintf("127.0.0.1:%d", dual)},
		{"udp6", fmt.Sprintf("[::1]:%d", dual)},
	} {
		c, err := net.Dial(d.network, d.addr)
		require.NoError(l.t, err)
		u.Clients = append(u.Clients, l.keepUDP(c.(*net.UDPConn)))
	}
	u.Clients = append(u.Clients, l.keepUDP(l.dialMapped(dual)))

	d := net.Dialer{Control: reusePort, LocalAddr: u.V4.LocalAddr()}
	c, err := d.Dial("udp4", u.Clients[0].LocalAddr().String())
	require.NoError(l.t, err)
	u.Inbound = l.keepUDP(c.(*net.UDPConn))
	return &u
}

// ListenUDP binds a UDP socket on network and addr and marks its address
// as the test's UDP endpoint.
func (l *Loopback) ListenUDP(network, addr string) *net.UDPConn {
	l.t.Helper()
	c := l.keepUDP(l.listenUDP(network, addr))
	l.MarkTransport(model.UDP, AddrPort(c.LocalAddr()))
	return c
}

func (l *Loopback) listenUDP(network, addr string) *net.UDPConn {
	l.t.Helper()
	a, err := net.ResolveUDPAddr(network, addr)
	require.NoError(l.t, err)
	c, err := net.ListenUDP(network, a)
	if err != nil {
		l.t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	return c
}

// dialMapped connects an AF_INET6 UDP socket to ::ffff:127.0.0.1 at port.
func (l *Loopback) dialMapped(port uint16) *net.UDPConn {
	l.t.Helper()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(l.t, err)
	sa := &unix.SockaddrInet6{Port: int(port), Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		require.NoError(l.t, err, "connecting an IPv6 socket to an IPv4-mapped address")
	}
	f := os.NewFile(uintptr(fd), "udp6-mapped")
	defer f.Close()
	c, err := net.FileConn(f)
	require.NoError(l.t, err)
	return c.(*net.UDPConn)
}

func (l *Loopback) keepUDP(c *net.UDPConn) *net.UDPConn {
	l.t.Cleanup(func() { c.Close() })
	return c
}

// AddrPort returns a UDP or TCP address as an AddrPort, unmapped.
func AddrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// UDPWant is what a source must list for one of the test's UDP sockets.
func UDPWant(t testing.TB, c *net.UDPConn) model.Socket {
	t.Helper()
	s := model.Socket{
		Transport: model.UDP,
		LocalIP:   AddrPort(c.LocalAddr()).Addr(),
		LocalPort: AddrPort(c.LocalAddr()).Port(),
		State:     model.StateClose,
		UID:       uint32(os.Geteuid()),
		Inode:     Inode(t, c),
	}
	if r := c.RemoteAddr(); r != nil {
		s.RemoteIP, s.RemotePort = AddrPort(r).Addr(), AddrPort(r).Port()
		s.State = model.StateEstablished
	} else if s.LocalIP.Is4() {
		s.RemoteIP = netip.IPv4Unspecified()
	} else {
		s.RemoteIP = netip.IPv6Unspecified()
	}
	return s
}

// Want lists what a source must list for every socket of u, sorted.
func (u *UDPSockets) Want(t testing.TB) []model.Socket {
	t.Helper()
	var out []model.Socket
	for _, c := range append([]*net.UDPConn{u.V4, u.V6, u.Dual, u.Inbound}, u.Clients...) {
		out = append(out, UDPWant(t, c))
	}
	Sort(out)
	return out
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
