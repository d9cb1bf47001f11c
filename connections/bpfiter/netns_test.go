package bpfiter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// nsAddr4 is bound only inside the test's namespace (any 127/8 address
// is local on lo), so a host poll that lists it has crossed over.
var nsAddr4 = netip.MustParseAddr("127.77.0.1")

// nsPoll is what the namespace's thread saw.
type nsPoll struct {
	bpf, nl []model.Socket
	// conns are the namespace's connections, local end first.
	conns [][2]netip.AddrPort
}

// TestKernelNetns polls with one Source, opened in the test's network
// namespace, from a thread moved into a new namespace: that poll lists the
// new namespace's sockets and nothing else (netlink opened there agrees),
// and a poll from the test's namespace at the same time does not list them.
func TestKernelNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare(CLONE_NEWNET) needs root")
	}
	src := openKernel(t)
	host := sockettest.New(t)
	hostLn := host.Listen("tcp4", "127.0.0.1:0")

	polled := make(chan nsPoll, 1)
	release := make(chan struct{})
	done := sockettest.InNewNetns(func() error {
		var closers []func() error
		defer func() {
			for _, c := range closers {
				c()
			}
		}()
		var p nsPoll
		for _, addr := range []string{net.JoinHostPort(nsAddr4.String(), "0"), "[::1]:0"} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			closers = append(closers, ln.Close)
			for range 2 {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return err
				}
				closers = append(closers, c.Close)
				s, err := ln.Accept()
				if err != nil {
					return err
				}
				closers = append(closers, s.Close)
				l, r := c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
				p.conns = append(p.conns, [2]netip.AddrPort{l, r}, [2]netip.AddrPort{r, l})
			}
		}
		var err error
		if p.bpf, err = src.Sockets(context.Background(), nil); err != nil {
			return fmt.Errorf("bpf poll in the namespace: %w", err)
		}
		nl, err := netlink.Open(netlink.Options{})
		if err != nil {
			return fmt.Errorf("netlink in the namespace: %w", err)
		}
		closers = append(closers, nl.Close)
		if p.nl, err = nl.Sockets(context.Background(), nil); err != nil {
			return fmt.Errorf("netlink poll in the namespace: %w", err)
		}
		polled <- p
		<-release
		return nil
	})
	var p nsPoll
	select {
	case p = <-polled:
	case err := <-done:
		if err == nil {
			err = errors.New("returned without polling")
		}
		require.NoError(t, err, "in the new namespace")
	}
	hostPoll, hostErr := src.Sockets(context.Background(), nil)
	close(release)
	require.NoError(t, <-done, "in the new namespace")
	require.NoError(t, hostErr, "host poll")

	sockettest.Sort(p.bpf)
	sockettest.Sort(p.nl)
	assert.Equal(t, p.nl, p.bpf, "bpf and netlink in the namespace")
	require.Len(t, p.bpf, 2+4*2, "the namespace's listeners and connections only")
	var conns [][2]netip.AddrPort
	for _, s := range p.bpf {
		if s.State == model.StateListen {
			assert.Contains(t, []netip.Addr{nsAddr4, netip.IPv6Loopback()}, s.LocalIP)
			continue
		}
		assert.Equal(t, model.StateEstablished, s.State)
		assert.NotZero(t, s.Inode)
		conns = append(conns, [2]netip.AddrPort{netip.AddrPortFrom(s.LocalIP, s.LocalPort), netip.AddrPortFrom(s.RemoteIP, s.RemotePort)})
	}
	assert.ElementsMatch(t, p.conns, conns)

	ln := hostLn.Addr().(*net.TCPAddr).AddrPort()
	assert.Len(t, host.Ours(hostPoll), 1, "the host's listener")
	for _, s := range hostPoll {
		assert.False(t, s.LocalIP == nsAddr4 || s.RemoteIP == nsAddr4, "namespace socket in a host poll: %+v", s)
		assert.NotContains(t, p.conns, [2]netip.AddrPort{netip.AddrPortFrom(s.LocalIP, s.LocalPort), netip.AddrPortFrom(s.RemoteIP, s.RemotePort)},
			"namespace connection in a host poll")
	}
	for _, s := range p.bpf {
		assert.NotEqual(t, ln, netip.AddrPortFrom(s.LocalIP, s.LocalPort), "host listener in the namespace's poll")
	}
}
