package bpfiter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
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
			src, err := open(slots, model.TransportsOf(model.TCP))
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
func inodeCache(src *Source) (*ebpf.Map, error) {
	info, err := src.tcp.Info()
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	pinfo, err := prog.Info()
	if err != nil {
		return nil, err
	}
	ids, ok := pinfo.MapIDs()
	if !ok {
		return nil, errors.New("the kernel lists no map ids of the program")
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, err
		}
		if minfo, err := m.Info(); err == nil && minfo.Name == iterMapConnbeatInodes {
			return m, nil
		}
		m.Close()
	}
	return nil, fmt.Errorf("no map %s among the program's %v", iterMapConnbeatInodes, ids)
}

// slotOf returns the index and content of the cache slot holding inode.
func slotOf(cache *ebpf.Map, inode uint64) (uint32, cacheSlot, error) {
	var (
		index uint32
		slot  cacheSlot
	)
	entries := cache.Iterate()
	for entries.Next(&index, &slot) {
		if slot.Inode == inode {
			return index, slot, nil
		}
	}
	if err := entries.Err(); err != nil {
		return 0, slot, err
	}
	return 0, slot, fmt.Errorf("no cache slot holds inode %d", inode)
}

// fdIDs returns the inode and the cookie (SO_COOKIE) of c's socket.
func fdIDs(c syscall.Conn) (ino, cookie uint64, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	cerr := raw.Control(func(fd uintptr) {
		var st unix.Stat_t
		if err = unix.Fstat(int(fd), &st); err == nil {
			ino = st.Ino
			cookie, err = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
		}
	})
	return ino, cookie, errors.Join(cerr, err)
}

// cachedSocket is one of TestKernelInodeCacheHits' sockets as its
// namespace's thread found it.
type cachedSocket struct {
	name            string
	state           model.State
	local, peer     uint16 // ports; peer 0 for the listener
	inode           uint64
	cookie          uint64
	slot            cacheSlot // after the first poll
	polledInode     uint64    // after its slot was given a made-up inode
	otherStateInode uint64    // the client's, after its slot was keyed with another state
}

// TestKernelInodeCacheHits proves the program uses its inode cache: a
// poll fills a slot for each cacheable socket of the test (keyed by its
// cookie and state, holding its inode); a slot the test then overwrites
// with a made-up inode is what the next poll reports, since a hit reads
// nothing else. A slot keyed with another state is not used. It runs in
// a network namespace of its own: sockets of the host could take the
// test's slots between a poll and the look at the cache.
func TestKernelInodeCacheHits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare(CLONE_NEWNET) needs root")
	}
	src, err := open(1<<10, model.TransportsOf(model.TCP))
	kerneltest.RequireBPF(t, err)
	t.Cleanup(func() { src.Close() })
	cache, err := inodeCache(src)
	require.NoError(t, err)
	defer cache.Close()

	const madeUp = 0x7ead_beef_0000_0000
	var socks []cachedSocket
	err = <-sockettest.InNewNetns(func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		client, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			return err
		}
		defer server.Close()
		lport, cport := port(ln.Addr()), port(client.LocalAddr())
		socks = []cachedSocket{
			{name: "client", state: model.StateEstablished, local: cport, peer: lport},
			{name: "server", state: model.StateEstablished, local: lport, peer: cport},
			{name: "listener", state: model.StateListen, local: lport},
		}
		for i, c := range []syscall.Conn{client.(*net.TCPConn), server.(*net.TCPConn), ln.(*net.TCPListener)} {
			if socks[i].inode, socks[i].cookie, err = fdIDs(c); err != nil {
				return err
			}
		}
		// inodeOf polls and returns the inode listed for each socket.
		inodeOf := func() (map[[2]uint16]uint64, error) {
			got, err := src.Sockets(context.Background(), nil)
			inodes := map[[2]uint16]uint64{}
			for _, s := range got {
				inodes[[2]uint16{s.LocalPort, s.RemotePort}] = s.Inode
			}
			return inodes, err
		}

		if _, err := inodeOf(); err != nil {
			return err
		}
		var indexes []uint32
		for i := range socks {
			index, slot, err := slotOf(cache, socks[i].inode)
			if err != nil {
				return fmt.Errorf("%s after the first poll: %w", socks[i].name, err)
			}
			socks[i].slot = slot
			indexes = append(indexes, index)
			if err := cache.Update(index, cacheSlot{Key: slot.Key, Inode: madeUp + uint64(i)}, ebpf.UpdateExist); err != nil {
				return err
			}
		}
		inodes, err := inodeOf()
		if err != nil {
			return err
		}
		for i := range socks {
			socks[i].polledInode = inodes[[2]uint16{socks[i].local, socks[i].peer}]
		}

		slot := cacheSlot{Key: socks[0].slot.Key&(1<<56-1) | uint64(model.StateCloseWait)<<56, Inode: madeUp}
		if err := cache.Update(indexes[0], slot, ebpf.UpdateExist); err != nil {
			return err
		}
		inodes, err = inodeOf()
		socks[0].otherStateInode = inodes[[2]uint16{socks[0].local, socks[0].peer}]
		return err
	})
	require.NoError(t, err, "in the test's network namespace")

	for i, s := range socks {
		assert.Equal(t, uint64(s.state), s.slot.Key>>56, "%s: the slot's key holds its state", s.name)
		if s.state == model.StateEstablished {
			// (A listener's cookie, as the program reads it, is not
			// the one SO_COOKIE returns on Linux 6.18.)
			assert.Equal(t, s.cookie, s.slot.Key&(1<<56-1), "%s: the slot's key holds its cookie", s.name)
		}
		assert.Equal(t, uint64(madeUp+i), s.polledInode, "%s: the poll read its inode from the cache", s.name)
	}
	assert.Equal(t, socks[0].inode, socks[0].otherStateInode, "a slot of another state is not used")
}
