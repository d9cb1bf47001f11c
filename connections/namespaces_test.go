package connections

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-libs/logp/logptest"
	"github.com/elastic/elastic-agent-libs/monitoring"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/classify"
	"github.com/connbeat/connbeat/connections/netns"
	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/connbeat/connbeat/internal/testkit/netnstest"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// twoNamespaces is a host with two more network namespaces, linked by a
// veth pair: A (a process lives in it) and B (named only, no process).
type twoNamespaces struct {
	a, b        *netnstest.NS
	aIP, bIP    netip.Addr
	crossPort   uint16 // A's listener on aIP, that B's client reached
	sharedPort  uint16 // 127.0.0.1:sharedPort listens in A and in B
	clientPort  uint16 // B's client across the veth
	boundPort   uint16 // B's client to its own listener, bound to a port A listens on
	ownLoopback uint16 // a listener in the test's own namespace
	closers     []func() error
	sleeperOfA  int
}

// listenIn listens in ns (tcp4 on addr) from the test process.
func listenIn(t *testing.T, h *twoNamespaces, ns *netnstest.NS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	require.NoError(t, ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}))
	h.closers = append(h.closers, ln.Close)
	return ln
}

func setupTwoNamespaces(t *testing.T) *twoNamespaces {
	t.Helper()
	h := &twoNamespaces{a: netnstest.Add(t), b: netnstest.Add(t)}
	t.Cleanup(func() {
		for _, c := range h.closers {
			c()
		}
	})
	var r [1]byte
	_, _ = rand.Read(r[:])
	h.aIP = netip.AddrFrom4([4]byte{10, 77, r[0], 1})
	h.bIP = netip.AddrFrom4([4]byte{10, 77, r[0], 2})
	netnstest.Veth(t, h.a, h.b, h.aIP.String()+"/24", h.bIP.String()+"/24")

	// A process in A, so that A is found through it (procfs reads its
	// /proc/PID/net); B is found through its name only.
	ctx, cancel := context.WithCancel(context.Background())
	sleeper := h.a.Command(ctx, "sleep", "600")
	require.NoError(t, sleeper.Start())
	t.Cleanup(func() { cancel(); _ = sleeper.Wait() })
	h.sleeperOfA = sleeper.Process.Pid
	require.Eventually(t, func() bool {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", h.sleeperOfA))
		return err == nil && l == fmt.Sprintf("net:[%d]", h.a.Inode)
	}, 10*time.Second, 10*time.Millisecond)

	cross := listenIn(t, h, h.a, h.aIP.String()+":0")
	h.crossPort = uint16(cross.Addr().(*net.TCPAddr).Port)
	var client net.Conn
	require.NoError(t, h.b.Do(func() (err error) {
		client, err = net.Dial("tcp4", cross.Addr().String())
		return err
	}))
	h.closers = append(h.closers, client.Close)
	h.clientPort = uint16(client.LocalAddr().(*net.TCPAddr).Port)
	accepted, err := cross.Accept()
	require.NoError(t, err)
	h.closers = append(h.closers, accepted.Close)

	shared := listenIn(t, h, h.a, "127.0.0.1:0")
	h.sharedPort = uint16(shared.Addr().(*net.TCPAddr).Port)
	listenIn(t, h, h.b, fmt.Sprintf("127.0.0.1:%d", h.sharedPort))

	// In B, a client bound to local port P connects to B's own listener,
	// while A (not B) listens on 0.0.0.0:P: the client is outbound.
	wild := listenIn(t, h, h.a, "0.0.0.0:0")
	h.boundPort = uint16(wild.Addr().(*net.TCPAddr).Port)
	bSrv := listenIn(t, h, h.b, "127.0.0.2:0")
	require.NoError(t, h.b.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(h.boundPort)}}
		c, err := d.Dial("tcp4", bSrv.Addr().String())
		if err != nil {
			return err
		}
		h.closers = append(h.closers, c.Close)
		return nil
	}))
	s, err := bSrv.Accept()
	require.NoError(t, err)
	h.closers = append(h.closers, s.Close)

	own, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	h.closers = append(h.closers, own.Close)
	h.ownLoopback = uint16(own.Addr().(*net.TCPAddr).Port)
	return h
}

// TestKernelEveryNamespace polls each source with every namespace on: the
// veth connection's ends each in its own namespace, the same address and
// port listening in two namespaces as two sockets, the agent's own
// namespace's sockets marked with its inode, and, classified, a client in
// B bound to a port that only A listens on is outbound.
func TestKernelEveryNamespace(t *testing.T) {
	h := setupTwoNamespaces(t)
	ownIno := linkIno(t, "/proc/self/ns/net")
	for _, name := range []string{ProcFS, Netlink, BPF} {
		t.Run(name, func(t *testing.T) {
			requireSource(t, name)
			reg := monitoring.NewRegistry()
			logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
			opts := sourceOptions(name, false, logger)
			opts.AllNamespaces, opts.Metrics = true, reg
			src, err := Open(opts)
			require.NoError(t, err)
			defer src.Close()
			for round := range 2 { // the second reuses what the first opened
				got, err := src.Sockets(context.Background(), nil)
				require.NoError(t, err, "round %d", round)
				has := func(ns uint64, local, remote netip.AddrPort, st model.State) bool {
					for _, s := range got {
						if s.NetNS == ns && s.State == st && netip.AddrPortFrom(s.LocalIP, s.LocalPort) == local &&
							netip.AddrPortFrom(s.RemoteIP, s.RemotePort) == remote && s.Inode != 0 {
							return true
						}
					}
					return false
				}
				lo := netip.MustParseAddr("127.0.0.1")
				any4 := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
				ap := netip.AddrPortFrom
				assert.True(t, has(h.a.Inode, ap(h.aIP, h.crossPort), any4, model.StateListen), "A's listener")
				assert.True(t, has(h.a.Inode, ap(h.aIP, h.crossPort), ap(h.bIP, h.clientPort), model.StateEstablished), "A's end of the veth connection")
				assert.True(t, has(h.b.Inode, ap(h.bIP, h.clientPort), ap(h.aIP, h.crossPort), model.StateEstablished), "B's end of the veth connection")
				assert.True(t, has(h.a.Inode, ap(lo, h.sharedPort), any4, model.StateListen), "A's 127.0.0.1:%d", h.sharedPort)
				assert.True(t, has(h.b.Inode, ap(lo, h.sharedPort), any4, model.StateListen), "B's 127.0.0.1:%d", h.sharedPort)
				assert.True(t, has(ownIno, ap(lo, h.ownLoopback), any4, model.StateListen), "the agent's own namespace")
				for _, s := range got {
					require.NotZero(t, s.NetNS, "%+v", s)
					assert.False(t, s.NetNS == ownIno && (s.LocalIP == h.aIP || s.LocalIP == h.bIP), "a namespace's socket marked as the agent's: %+v", s)
				}

				recs := classify.New(classify.Options{LocalConnections: true}).Classify(got, nil, nil)
				dirs := map[string]model.Direction{}
				for _, r := range recs {
					s := r.Socket
					switch {
					case s.NetNS == h.b.Inode && s.LocalPort == h.boundPort && s.State == model.StateEstablished:
						dirs["B's bound client"] = r.Direction
					case s.NetNS == h.a.Inode && s.LocalPort == h.crossPort && s.State == model.StateEstablished:
						dirs["A's accepted"] = r.Direction
					case s.NetNS == h.b.Inode && s.LocalPort == h.clientPort && s.State == model.StateEstablished:
						dirs["B's veth client"] = r.Direction
					}
				}
				assert.Equal(t, map[string]model.Direction{
					"B's bound client": model.Outbound, "A's accepted": model.Inbound, "B's veth client": model.Outbound,
				}, dirs)
			}
			snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
			assert.GreaterOrEqual(t, snap.Ints["socket_source.netns.namespaces"], int64(3), "the agent's, A and B at least")
			assert.Zero(t, snap.Ints["socket_source.netns.denied"])
			for _, e := range logs.TakeAll() {
				if strings.Contains(e.Message, "network namespaces:") {
					assert.Equal(t, "info", e.Level.String(), "root enters every namespace it finds: %s", e.Message)
					assert.NotContains(t, e.Message, "may not be entered")
				}
			}
		})
	}
}

func linkIno(t *testing.T, path string) uint64 {
	t.Helper()
	l, err := os.Readlink(path)
	require.NoError(t, err)
	ino, ok := netns.ParseLink([]byte(l))
	require.True(t, ok, l)
	return ino
}

// fdCount is how many fds the test process holds.
func fdCount(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(fds)
}

// TestKernelNamespaceComesAndGoes: a namespace created while a source
// polls is read from the next poll; deleted, its sockets are gone and
// what the source kept for it is released (the process's fd count is
// back to where it was before it came).
func TestKernelNamespaceComesAndGoes(t *testing.T) {
	for _, name := range []string{ProcFS, Netlink, BPF} {
		t.Run(name, func(t *testing.T) {
			requireSource(t, name)
			reg := monitoring.NewRegistry()
			opts := sourceOptions(name, false, nil)
			opts.AllNamespaces, opts.Metrics = true, reg
			src, err := Open(opts)
			require.NoError(t, err)
			defer src.Close()
			_, err = src.Sockets(context.Background(), nil)
			require.NoError(t, err)
			// netlink keeps a socket for each other namespace: other
			// suites on the host make and delete namespaces meanwhile.
			kept := func() int {
				if name != Netlink {
					return 0
				}
				return int(monitoring.CollectFlatSnapshot(reg, monitoring.Full, false).Ints["socket_source.netns.namespaces"])
			}
			before := fdCount(t) - kept()

			ns := netnstest.Add(t)
			var ln net.Listener
			require.NoError(t, ns.Do(func() (err error) {
				ln, err = net.Listen("tcp4", "127.0.0.1:0")
				return err
			}))
			port := uint16(ln.Addr().(*net.TCPAddr).Port)
			count := func() int {
				got, err := src.Sockets(context.Background(), nil)
				require.NoError(t, err)
				n := 0
				for _, s := range got {
					if s.NetNS == ns.Inode && s.LocalPort == port && s.State == model.StateListen {
						n++
					}
				}
				return n
			}
			assert.Equal(t, 1, count(), "picked up")
			assert.Equal(t, 1, count())
			ln.Close()
			ns.Delete(t)
			assert.Zero(t, count(), "gone")
			_ = count() // a poll after it is gone releases what was kept for it
			assert.Equal(t, before, fdCount(t)-kept(), "no fd left for the deleted namespace")
		})
	}
}

// TestKernelNamespacesOwnOnly: network_namespaces: own reads the agent's
// namespace only, its sockets marked with its inode.
func TestKernelNamespacesOwnOnly(t *testing.T) {
	h := setupTwoNamespaces(t)
	ownIno := linkIno(t, "/proc/self/ns/net")
	src, err := Open(sourceOptions(Netlink, false, nil))
	require.NoError(t, err)
	defer src.Close()
	got, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	found := false
	for _, s := range got {
		assert.Equal(t, ownIno, s.NetNS)
		assert.NotEqual(t, h.aIP, s.LocalIP)
		found = found || s.LocalPort == h.ownLoopback
	}
	assert.True(t, found, "the agent's own listener")
}

// TestKernelNamespacesWithoutSysAdmin runs itself again in a child without
// CAP_SYS_ADMIN (and so without setns): netlink reads the agent's own
// namespace and says once, in one line and in socket_source.netns.denied,
// which it could not enter; procfs reads A through A's process anyway.
func TestKernelNamespacesWithoutSysAdmin(t *testing.T) {
	if os.Getenv("CONNBEAT_NOADMIN_CHILD") != "" {
		noAdminChild(t)
		return
	}
	h := setupTwoNamespaces(t)
	setpriv := testkit.RequireTool(t, "setpriv")
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(setpriv, "--inh-caps=-all", "--bounding-set=-sys_admin", "--", exe, "-test.run=^TestKernelNamespacesWithoutSysAdmin$", "-test.v")
	cmd.Env = append(os.Environ(), "CONNBEAT_NOADMIN_CHILD=1",
		fmt.Sprintf("NS_A=%d", h.a.Inode), fmt.Sprintf("NS_B=%d", h.b.Inode), fmt.Sprintf("PORT_SHARED=%d", h.sharedPort))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestKernelNamespacesWithoutSysAdmin", "%s", out)
}

func noAdminChild(t *testing.T) {
	var a, b uint64
	var port uint16
	_, err := fmt.Sscan(os.Getenv("NS_A")+" "+os.Getenv("NS_B")+" "+os.Getenv("PORT_SHARED"), &a, &b, &port)
	require.NoError(t, err)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	require.NoError(t, unix.Capget(&hdr, &caps[0]))
	require.Zero(t, caps[0].Effective&(1<<unix.CAP_SYS_ADMIN), "the child runs without CAP_SYS_ADMIN")

	in := func(got []model.Socket, ns uint64) bool {
		for _, s := range got {
			if s.NetNS == ns && s.LocalPort == port && s.State == model.StateListen {
				return true
			}
		}
		return false
	}
	for _, name := range []string{Netlink, ProcFS} {
		reg := monitoring.NewRegistry()
		logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
		opts := sourceOptions(name, false, logger)
		opts.AllNamespaces, opts.Metrics = true, reg
		src, err := Open(opts)
		require.NoError(t, err, name)
		for range 3 {
			got, err := src.Sockets(context.Background(), nil)
			require.NoError(t, err, name)
			assert.NotEmpty(t, got, name)
			switch name {
			case Netlink:
				assert.False(t, in(got, a) || in(got, b), "netlink cannot enter A or B")
			case ProcFS:
				assert.True(t, in(got, a), "procfs reads A through its process")
				assert.False(t, in(got, b), "B has no process: only setns reaches it")
			}
		}
		src.Close()
		var lines []string
		for _, e := range logs.TakeAll() {
			if strings.Contains(e.Message, "network namespaces:") {
				lines = append(lines, e.Message)
			}
		}
		require.Len(t, lines, 1, "%s: said once: %q", name, lines)
		assert.Contains(t, lines[0], "may not be entered (setns needs CAP_SYS_ADMIN", name)
		snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
		want := int64(2) // A and B
		if name == ProcFS {
			want = 1 // B
		}
		assert.GreaterOrEqual(t, snap.Ints["socket_source.netns.denied"], want, name)
	}
}

// TestKernelNamespaceReadReused: a namespace whose counters have not moved
// is not read again (socket_source.netns.unchanged counts it) and gives
// the same sockets; a connection opened in it, or a listener closed, moves
// them and the next poll reads it; a change the counters miss (a listener
// closed and another opened between two polls) is read once the full
// read is due.
func TestKernelNamespaceReadReused(t *testing.T) {
	for _, name := range []string{ProcFS, Netlink, BPF} {
		t.Run(name, func(t *testing.T) {
			requireSource(t, name)
			ns := netnstest.Add(t)
			reg := monitoring.NewRegistry()
			opts := sourceOptions(name, false, nil)
			opts.AllNamespaces, opts.Metrics = true, reg
			src, err := Open(opts)
			require.NoError(t, err)
			defer src.Close()
			nss := src.(*counted).Source.(*nsSource)

			var ln net.Listener
			require.NoError(t, ns.Do(func() (err error) {
				ln, err = net.Listen("tcp4", "127.0.0.1:0")
				return err
			}))
			defer func() { ln.Close() }()
			poll := func() ([]model.Socket, int64) {
				got, err := src.Sockets(context.Background(), nil)
				require.NoError(t, err)
				var mine []model.Socket
				for _, s := range got {
					if s.NetNS == ns.Inode {
						mine = append(mine, s)
					}
				}
				snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
				return mine, snap.Ints["socket_source.netns.unchanged"]
			}
			// The counters settle: netlink's own sock_diag socket, made
			// there, moves them once, and the sockets of `ip` that made
			// the namespace are released a moment after it exits.
			first, _ := poll()
			require.Len(t, first, 1)
			var again []model.Socket
			require.Eventually(t, func() bool {
				// Its first full-read deadline may fall on the next poll.
				if last := nss.cache[ns.Inode]; last != nil {
					last.until = time.Now().Add(time.Hour)
				}
				var unchanged int64
				again, unchanged = poll()
				return unchanged >= 1
			}, 10*time.Second, 20*time.Millisecond, "read again although nothing moved")
			assert.Equal(t, first, again)

			var c net.Conn
			require.NoError(t, ns.Do(func() (err error) {
				c, err = net.Dial("tcp4", ln.Addr().String())
				return err
			}))
			defer c.Close()
			s, err := ln.Accept()
			require.NoError(t, err)
			defer s.Close()
			withConn, _ := poll()
			assert.Len(t, withConn, 3, "a connection moves ActiveOpens/PassiveOpens: read")

			// The counters cannot tell one listener from another: swap
			// the listener for one on another port, between two polls.
			port := ln.Addr().(*net.TCPAddr).Port
			// Reset, not FIN: no TIME_WAIT socket to move the counters later.
			require.NoError(t, c.(*net.TCPConn).SetLinger(0))
			require.NoError(t, s.(*net.TCPConn).SetLinger(0))
			c.Close()
			s.Close()
			withConn, _ = poll() // the close moves the counters
			nss.cache[ns.Inode].until = time.Now().Add(time.Hour)
			poll()
			require.NoError(t, ns.Do(func() error {
				ln.Close()
				var err error
				ln, err = net.Listen("tcp4", "127.0.0.1:0")
				return err
			}))
			swapped := ln.Addr().(*net.TCPAddr).Port
			require.NotEqual(t, port, swapped)
			hasPort := func(got []model.Socket, p int) bool {
				for _, s := range got {
					if s.State == model.StateListen && int(s.LocalPort) == p {
						return true
					}
				}
				return false
			}
			stale, _ := poll()
			if hasPort(stale, swapped) {
				t.Log("the counters moved anyway (a socket of the namespace changed state meanwhile)")
			} else {
				assert.True(t, hasPort(stale, port), "the last read, used again")
			}
			nss.cache[ns.Inode].until = time.Now() // the full read is due
			fresh, _ := poll()
			assert.True(t, hasPort(fresh, swapped), "read in full once due")
			assert.False(t, hasPort(fresh, port))
		})
	}
}

// TestKernelOwnNamespaceReused: with ReuseOwn (the event capture runs) the
// agent's own namespace, too, is not read again while its counters stay
// still; a change the counters miss (a bound UDP socket connected) shows
// only in a read under FullRead, and a new connection moves the counters.
// The "agent" here is a thread of the test in a namespace of its own, so
// that no other test's sockets move its counters. (procfs reads the
// process's /proc/self/net, the main thread's namespace: not this one.)
func TestKernelOwnNamespaceReused(t *testing.T) {
	for _, name := range []string{Netlink, BPF} {
		t.Run(name, func(t *testing.T) {
			requireSource(t, name)
			ns := netnstest.Add(t)
			reg := monitoring.NewRegistry()
			var src Source
			var nss *nsSource
			var udp *net.UDPConn
			require.NoError(t, ns.Do(func() error {
				if err := sockettest.LoopbackUp(); err != nil {
					return err
				}
				opts := sourceOptions(name, false, nil)
				opts.Metrics, opts.ReuseOwn = reg, true
				var err error
				if src, err = Open(opts); err != nil {
					return err
				}
				udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				return err
			}))
			defer src.Close()
			defer udp.Close()
			nss = src.(*counted).Source.(*nsSource)
			ownIno := nss.finder.Own().Inode
			require.Equal(t, ns.Inode, ownIno, "the source's own namespace is the test thread's")

			poll := func(ctx context.Context) ([]model.Socket, int64) {
				var got []model.Socket
				require.NoError(t, ns.Do(func() (err error) {
					got, err = src.Sockets(ctx, nil)
					return err
				}))
				snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
				return got, snap.Ints["socket_source.netns.unchanged"]
			}
			udpRemote := func(got []model.Socket) (netip.AddrPort, bool) {
				for _, s := range got {
					if s.Transport == model.UDP && int(s.LocalPort) == udp.LocalAddr().(*net.UDPAddr).Port {
						return netip.AddrPortFrom(s.RemoteIP, s.RemotePort), true
					}
				}
				return netip.AddrPort{}, false
			}
			first, _ := poll(context.Background())
			remote, ok := udpRemote(first)
			require.True(t, ok, "the bound UDP socket is read: %+v", first)
			require.Zero(t, remote.Port())
			require.Eventually(t, func() bool {
				if last := nss.cache[ownIno]; last != nil {
					last.until = time.Now().Add(time.Hour) // not due meanwhile
				}
				_, unchanged := poll(context.Background())
				return unchanged == 1
			}, 10*time.Second, 20*time.Millisecond, "the own namespace was read again although nothing moved")

			// Unix sockets come and go on any host (D-Bus, journald
			// clients) and are no socket the sources read: a read of
			// the namespace again for them would be wasted.
			var pair [2]int
			require.NoError(t, ns.Do(func() (err error) {
				pair, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				return err
			}))
			defer unix.Close(pair[0])
			defer unix.Close(pair[1])
			_, unchanged := poll(context.Background())
			require.EqualValues(t, 1, unchanged, "a unix socket pair made the namespace read again")
			assert.True(t, Unchanged(src), "every namespace's last read used again")

			// connect(2) on a bound UDP socket moves no counter.
			raw, err := udp.SyscallConn()
			require.NoError(t, err)
			var cerr error
			require.NoError(t, raw.Control(func(fd uintptr) {
				cerr = unix.Connect(int(fd), &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}})
			}))
			require.NoError(t, cerr)
			stale, unchanged := poll(context.Background())
			require.EqualValues(t, 1, unchanged, "the counters moved")
			remote, _ = udpRemote(stale)
			assert.Zero(t, remote.Port(), "the last read, used again")

			fresh, unchanged := poll(FullRead(context.Background()))
			assert.Zero(t, unchanged, "FullRead reuses nothing")
			assert.False(t, Unchanged(src), "a read of the kernel")
			remote, _ = udpRemote(fresh)
			assert.EqualValues(t, 9, remote.Port(), "FullRead reads the kernel")

			var ln net.Listener
			var c net.Conn
			require.NoError(t, ns.Do(func() (err error) {
				if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
					return err
				}
				c, err = net.Dial("tcp4", ln.Addr().String())
				return err
			}))
			defer ln.Close()
			defer c.Close()
			got, unchanged := poll(context.Background())
			assert.Zero(t, unchanged, "a connection moves the counters: read")
			assert.Len(t, got, len(fresh)+3, "the listener and both ends of the connection")
		})
	}
}

// TestKernelSameReadUnchanged: without ReuseOwn (polling) the agent's own
// namespace is read every poll, and a read that lists what the last one
// listed, in the same order, makes the source unchanged; a new connection
// does not. As in TestKernelOwnNamespaceReused, the "agent" is a thread
// of the test in a namespace of its own.
func TestKernelSameReadUnchanged(t *testing.T) {
	for _, name := range []string{Netlink, BPF} {
		t.Run(name, func(t *testing.T) {
			requireSource(t, name)
			ns := netnstest.Add(t)
			var src Source
			var ln net.Listener
			require.NoError(t, ns.Do(func() (err error) {
				if err := sockettest.LoopbackUp(); err != nil {
					return err
				}
				if src, err = Open(sourceOptions(name, false, nil)); err != nil {
					return err
				}
				ln, err = net.Listen("tcp4", "127.0.0.1:0")
				return err
			}))
			defer src.Close()
			defer ln.Close()
			poll := func() []model.Socket {
				var got []model.Socket
				require.NoError(t, ns.Do(func() (err error) {
					got, err = src.Sockets(context.Background(), nil)
					return err
				}))
				return got
			}
			first := poll()
			require.Len(t, first, 1, "the listener")
			assert.False(t, Unchanged(src), "nothing read before")
			assert.Equal(t, first, poll())
			assert.True(t, Unchanged(src), "the same read again")

			var c net.Conn
			require.NoError(t, ns.Do(func() (err error) {
				c, err = net.Dial("tcp4", ln.Addr().String())
				return err
			}))
			defer c.Close()
			assert.Len(t, poll(), 3, "the listener and both ends")
			assert.False(t, Unchanged(src), "a new connection")
		})
	}
}

// TestFirstDeadlineSpread: namespaces' inodes are consecutive numbers
// near 4026531840; their first full reads still spread over the period.
func TestFirstDeadlineSpread(t *testing.T) {
	const n = 50
	period := 5 * time.Minute
	var lo, hi time.Duration = period, 0
	for ino := uint64(4026531833); ino < 4026531833+n; ino++ {
		d := firstDeadline(ino, period)
		require.True(t, d >= 0 && d < period, "%s", d)
		lo, hi = min(lo, d), max(hi, d)
	}
	assert.Greater(t, hi-lo, period/2, "first deadlines %s .. %s", lo, hi)
}
