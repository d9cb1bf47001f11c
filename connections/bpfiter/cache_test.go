package bpfiter

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// TestKernelInodeCache walks sockets through the transitions that change
// or keep their inode, polling before and after each one so that the
// program's inode cache holds every cacheable socket when it changes, and
// compares each poll with netlink: a connection accepted after it was seen
// unaccepted (inode 0 -> file), half-closed, orphaned by close (file -> 0),
// the server side moving to CLOSE_WAIT and LAST_ACK, a listener closed.
// With one slot every socket collides with every other: the answers must
// not change, only the cost.
func TestKernelInodeCache(t *testing.T) {
	for _, slots := range []uint32{cacheSlots, 1} {
		t.Run(map[uint32]string{cacheSlots: "default cache", 1: "one slot"}[slots], func(t *testing.T) {
			src, err := open(slots)
			kerneltest.RequireBPF(t, err)
			t.Cleanup(func() { src.Close() })
			testInodeCache(t, src)
		})
	}
}

func testInodeCache(t *testing.T, src *Source) {
	lb := sockettest.New(t)
	ln := listenRaw(t, lb, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, 8)
	clients := []net.Conn{lb.Dial(ln, "127.0.0.1"), lb.Dial(ln, "127.0.0.1"), lb.Dial(ln, "127.0.0.1")}
	poll := func(step string, settled func([]model.Socket) bool) []model.Socket {
		t.Helper()
		// Twice: the first poll fills the cache, the second reads from it.
		sameAsNetlink(t, src, lb, settled)
		got := sameAsNetlink(t, src, lb, settled)
		t.Logf("%s: %d sockets", step, len(got))
		return got
	}
	// find returns the socket from local port to remote port.
	find := func(got []model.Socket, local, remote uint16) model.Socket {
		t.Helper()
		for _, s := range got {
			if s.LocalPort == local && s.RemotePort == remote {
				return s
			}
		}
		t.Fatalf("no socket %d -> %d in %+v", local, remote, got)
		return model.Socket{}
	}
	lport := port(ln.Addr())
	clientOf := func(got []model.Socket, c net.Conn) model.Socket {
		return find(got, port(c.LocalAddr()), lport)
	}
	serverOf := func(got []model.Socket, c net.Conn) model.Socket {
		return find(got, lport, port(c.LocalAddr()))
	}
	all := func([]model.Socket) bool { return true }

	got := poll("unaccepted", func(s []model.Socket) bool { return countState(s, model.StateEstablished) == 6 })
	for _, c := range clients {
		assert.Equal(t, sockettest.Inode(t, c.(*net.TCPConn)), clientOf(got, c).Inode, "client")
		assert.Zero(t, serverOf(got, c).Inode, "not accepted yet")
	}

	// Accepted: the same sockets, in the same state, now with a file.
	var servers []net.Conn
	for range 2 {
		s, err := ln.Accept()
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		servers = append(servers, s)
	}
	got = poll("accepted", all)
	for _, s := range servers {
		sock := find(got, lport, port(s.RemoteAddr()))
		assert.Equal(t, sockettest.Inode(t, s.(*net.TCPConn)), sock.Inode, "accepted after it was seen without a file")
	}

	// Client 0 half-closes (FIN_WAIT2, still its file; server CLOSE_WAIT),
	// then closes with a long linger2: an orphan, inode 0.
	require.NoError(t, clients[0].(*net.TCPConn).CloseWrite())
	got = poll("half-closed", func(s []model.Socket) bool {
		// The server's CLOSE_WAIT comes with the FIN, the client's FIN_WAIT2
		// with the ACK of it: wait for both.
		return countState(s, model.StateCloseWait) == 1 && countState(s, model.StateFinWait2) == 1
	})
	assert.Equal(t, model.StateFinWait2, clientOf(got, clients[0]).State)
	assert.Equal(t, sockettest.Inode(t, clients[0].(*net.TCPConn)), clientOf(got, clients[0]).Inode)
	sockettest.SetTCPOption(t, clients[0].(*net.TCPConn), unix.TCP_LINGER2, 120)
	require.NoError(t, clients[0].Close())
	got = poll("orphaned", all)
	assert.Zero(t, clientOf(got, clients[0]).Inode, "closed: no file")

	// Its server side (CLOSE_WAIT, cached with its file) closes: LAST_ACK,
	// then gone; client 1 (ESTABLISHED, cached) closes: FIN_WAIT, then
	// TIME_WAIT, never with the file it had.
	require.NoError(t, servers[0].Close())
	require.NoError(t, clients[1].Close())
	got = poll("closed", func(s []model.Socket) bool { return countState(s, model.StateLastAck) == 0 })
	assert.Zero(t, clientOf(got, clients[1]).Inode)

	// The listener (LISTEN, cached) closes: its unaccepted connection is
	// reset, and no socket keeps the listener's inode.
	listenerIno := sockettest.Inode(t, ln.(*net.TCPListener))
	require.NoError(t, ln.Close())
	got = poll("listener closed", all)
	for _, s := range got {
		assert.NotEqual(t, listenerIno, s.Inode, "%+v", s)
	}
}
