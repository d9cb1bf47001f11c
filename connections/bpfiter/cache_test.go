package bpfiter

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// TestKernelInodeCacheNeverStale walks sockets through the transitions that change
// or keep their inode, polling before and after each one so that the
// program's inode cache holds every cacheable socket when it changes, and
// compares each poll with netlink: a connection accepted after it was seen
// unaccepted (inode 0 -> file), half-closed, orphaned by close (file -> 0),
// the server side moving to CLOSE_WAIT and LAST_ACK, a listener closed.
// With one slot every socket collides with every other: the answers must
// not change, only the cost.
func TestKernelInodeCacheNeverStale(t *testing.T) {
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

// cacheSlot is struct slot in iter.bpf.c.
type cacheSlot struct{ Key, Inode uint64 }

// inodeCache opens the inode cache map of the program src's iterator
// runs, found through the link's program.
func inodeCache(t *testing.T, src *Source) *ebpf.Map {
	t.Helper()
	info, err := src.iter.Info()
	require.NoError(t, err)
	prog, err := ebpf.NewProgramFromID(info.Program)
	require.NoError(t, err)
	defer prog.Close()
	pinfo, err := prog.Info()
	require.NoError(t, err)
	ids, ok := pinfo.MapIDs()
	require.True(t, ok, "the kernel lists no map ids of the program")
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		require.NoError(t, err)
		if minfo, err := m.Info(); err == nil && minfo.Name == iterMapConnbeatInodes {
			t.Cleanup(func() { m.Close() })
			return m
		}
		m.Close()
	}
	t.Fatalf("no map %s among the program's %v", iterMapConnbeatInodes, ids)
	return nil
}

// slotOf returns the index and content of the cache slot holding inode,
// failing the test when none does.
func slotOf(t *testing.T, cache *ebpf.Map, inode uint64) (uint32, cacheSlot) {
	t.Helper()
	var (
		index uint32
		slot  cacheSlot
	)
	entries := cache.Iterate()
	for entries.Next(&index, &slot) {
		if slot.Inode == inode {
			return index, slot
		}
	}
	require.NoError(t, entries.Err())
	t.Fatalf("no cache slot holds inode %d", inode)
	return 0, slot
}

// TestKernelInodeCacheHits proves the program uses its inode cache: a
// poll fills a slot for each cacheable socket of the test (keyed by its
// cookie and state, holding its inode); a slot the test then overwrites
// with a made-up inode is what the next poll reports, since a hit reads
// nothing else. A slot keyed with another state is not used.
func TestKernelInodeCacheHits(t *testing.T) {
	const slots = 1 << 10
	src, err := open(slots)
	kerneltest.RequireBPF(t, err)
	t.Cleanup(func() { src.Close() })
	lb := sockettest.New(t)
	ln := lb.Listen("tcp4", "127.0.0.1:0")
	lb.Connect(ln, "127.0.0.1", 1)
	client, server := lb.Conns[0].(*net.TCPConn), lb.Conns[1].(*net.TCPConn)

	socks := []struct {
		name  string
		conn  syscall.Conn
		state model.State
		local uint16
		peer  uint16 // remote port, 0 for the listener
	}{
		{"client", client, model.StateEstablished, port(client.LocalAddr()), port(ln.Addr())},
		{"server", server, model.StateEstablished, port(ln.Addr()), port(client.LocalAddr())},
		{"listener", ln.(*net.TCPListener), model.StateListen, port(ln.Addr()), 0},
	}
	poll := func() []model.Socket {
		t.Helper()
		got, err := src.Sockets(context.Background(), nil)
		require.NoError(t, err)
		return lb.Ours(got)
	}
	inodeOf := func(got []model.Socket, local, peer uint16) uint64 {
		t.Helper()
		for _, s := range got {
			if s.LocalPort == local && s.RemotePort == peer {
				return s.Inode
			}
		}
		t.Fatalf("no socket %d -> %d in %+v", local, peer, got)
		return 0
	}

	poll()
	cache := inodeCache(t, src)
	const madeUp = 0x7ead_beef_0000_0000
	for i, s := range socks {
		index, slot := slotOf(t, cache, sockettest.Inode(t, s.conn))
		assert.Equal(t, uint64(s.state), slot.Key>>56, "%s: the slot's key holds its state", s.name)
		if s.state == model.StateEstablished {
			// (A listener's cookie, as the program reads it, is not
			// the one SO_COOKIE returns on Linux 6.18.)
			assert.Equal(t, sockettest.Cookie(t, s.conn), slot.Key&(1<<56-1), "%s: the slot's key holds its cookie", s.name)
		}
		require.NoError(t, cache.Update(index, cacheSlot{Key: slot.Key, Inode: madeUp + uint64(i)}, ebpf.UpdateExist))
	}
	got := poll()
	for i, s := range socks {
		assert.Equal(t, uint64(madeUp+i), inodeOf(got, s.local, s.peer), "%s: the poll read its inode from the cache", s.name)
	}

	// The client's slot keyed with another state misses: its inode is
	// read from the socket again.
	index, slot := slotOf(t, cache, madeUp)
	slot.Key = slot.Key&(1<<56-1) | uint64(model.StateCloseWait)<<56
	require.NoError(t, cache.Update(index, slot, ebpf.UpdateExist))
	assert.Equal(t, sockettest.Inode(t, client), inodeOf(poll(), socks[0].local, socks[0].peer), "a slot of another state is not used")
}
