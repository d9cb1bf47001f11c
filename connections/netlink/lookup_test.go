package netlink

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

func openLookup(t *testing.T) *Lookup {
	t.Helper()
	l, err := OpenLookup()
	if model.IsUnavailable(err) {
		t.Skipf("kernel sock_diag unavailable: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	panic("not an IP address")
}

// find asks for one socket and checks the answer's port (its address may
// be a listener's wildcard).
func find(t *testing.T, l *Lookup, proto uint8, local, remote netip.AddrPort) (model.Socket, bool) {
	t.Helper()
	s, ok, err := l.Find(proto, local, remote)
	require.NoError(t, err)
	if ok {
		assert.Equal(t, local.Port(), s.LocalPort, "local port of the answer")
	}
	return s, ok
}

// TestKernelLookupTCP finds each end of loopback TCP connections in both
// families and through a dual-stack listener: the connected socket when
// one matches, the listener when the connection is not accepted yet (its
// socket has no inode) or when the peer is left out.
func TestKernelLookupTCP(t *testing.T) {
	l := openLookup(t)
	for _, tc := range []struct{ name, network, listen, dial string }{
		{"ipv4", "tcp4", "127.0.0.1:0", "127.0.0.1"},
		{"ipv6", "tcp6", "[::1]:0", "::1"},
		{"ipv4 to a dual-stack listener", "tcp", "[::]:0", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen(tc.network, tc.listen)
			require.NoError(t, err)
			defer ln.Close()
			port := addrPort(ln.Addr()).Port()
			server := netip.AddrPortFrom(netip.MustParseAddr(tc.dial), port)
			c, err := net.Dial("tcp", server.String())
			require.NoError(t, err)
			defer c.Close()
			client := addrPort(c.LocalAddr())
			listenerIno := sockettest.Inode(t, ln.(*net.TCPListener))

			s, ok := find(t, l, protoTCP, client, server)
			require.True(t, ok, "the client socket")
			assert.Equal(t, sockettest.Inode(t, c.(*net.TCPConn)), s.Inode)
			assert.Equal(t, client.Addr().Unmap(), s.LocalIP)
			assert.Equal(t, model.StateEstablished, s.State)
			assert.Equal(t, server.Addr().Unmap(), s.RemoteIP)

			// Queued, not accepted: the kernel's socket has no inode yet.
			s, ok = find(t, l, protoTCP, server, client)
			require.True(t, ok, "the queued server end")
			assert.Zero(t, s.Inode)
			s, ok = find(t, l, protoTCP, server, netip.AddrPortFrom(zeroOf(server.Addr()), 0))
			require.True(t, ok, "the listener")
			assert.Equal(t, model.StateListen, s.State)
			assert.Equal(t, listenerIno, s.Inode)
			assert.Equal(t, addrPort(ln.Addr()).Addr().Unmap(), s.LocalIP, "the listener's own address")

			acc, err := ln.Accept()
			require.NoError(t, err)
			defer acc.Close()
			s, ok = find(t, l, protoTCP, server, client)
			require.True(t, ok, "the accepted server end")
			assert.Equal(t, sockettest.Inode(t, acc.(*net.TCPConn)), s.Inode)
		})
	}
}

// TestKernelLookupUDP finds a connected UDP client and the unconnected
// server socket bound to the address its datagrams go to.
func TestKernelLookupUDP(t *testing.T) {
	l := openLookup(t)
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "udp4", "127.0.0.1:0"},
		{"ipv6", "udp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := net.ListenPacket(tc.network, tc.addr)
			require.NoError(t, err)
			defer srv.Close()
			server := addrPort(srv.LocalAddr())
			c, err := net.Dial(tc.network, server.String())
			require.NoError(t, err)
			defer c.Close()
			client := addrPort(c.LocalAddr())

			s, ok := find(t, l, protoUDP, client, server)
			require.True(t, ok, "the connected client")
			assert.Equal(t, sockettest.Inode(t, c.(*net.UDPConn)), s.Inode)
			assert.Equal(t, model.UDP, s.Transport)
			s, ok = find(t, l, protoUDP, server, client)
			require.True(t, ok, "the server bound to the address")
			assert.Equal(t, sockettest.Inode(t, srv.(*net.UDPConn)), s.Inode)
		})
	}
}

// TestKernelLookupMisses: no socket is an answer, not an error, and the
// lookup keeps working after it; a request it cannot build is an error.
func TestKernelLookupMisses(t *testing.T) {
	l := openLookup(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	free := addrPort(ln.Addr())
	ln.Close()
	peer := netip.MustParseAddrPort("127.0.0.1:9")
	for i := 0; i < 3; i++ {
		_, ok := find(t, l, protoTCP, free, peer)
		assert.False(t, ok)
		_, ok = find(t, l, protoUDP, free, peer)
		assert.False(t, ok)
	}
	_, _, err = l.Find(protoTCP, free, netip.MustParseAddrPort("[::1]:9"))
	assert.ErrorContains(t, err, "not of one address family")
	_, _, err = l.Find(1, free, peer)
	assert.ErrorContains(t, err, "protocol 1 is not tcp or udp")
}

func zeroOf(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}
