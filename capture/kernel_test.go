package capture

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit/child"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/model"
)

// The test binary runs itself as a child to be a process other than the
// test's: the kernel must attribute the child's connections to the child.
var (
	// connectChild dials args[0] args[1] times, each connection open for
	// about 5 ms: it sends sentBytes(i) bytes, half-closes, reads the
	// server's reply to the end and closes. It prints each connection's
	// local port, one a line, after the last.
	connectChild = child.Helper{Name: "capture-connect", Main: func(args []string) error {
		if len(args) != 2 {
			return fmt.Errorf("want address and count, got %q", args)
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		var ports []string
		for i := range n {
			port, err := shortConnection(args[0], i)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			ports = append(ports, strconv.Itoa(port))
		}
		fmt.Println(strings.Join(ports, "\n"))
		return nil
	}}
	// dialChild dials args[0] once and exits at once, leaving the close
	// to the kernel; it prints its local port first.
	dialChild = child.Helper{Name: "capture-dial", Main: func(args []string) error {
		c, err := net.Dial("tcp", args[0])
		if err != nil {
			return err
		}
		fmt.Println(c.LocalAddr().(*net.TCPAddr).Port)
		os.Exit(0)
		return nil
	}}
	// sendtoChild sends args[1] datagrams to args[0] from one unconnected
	// socket and prints the socket's local port.
	sendtoChild = child.Helper{Name: "capture-sendto", Main: func(args []string) error {
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		to, err := net.ResolveUDPAddr("udp", args[0])
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.WriteTo([]byte("query"), to); err != nil {
				return err
			}
		}
		fmt.Println(c.LocalAddr().(*net.UDPAddr).Port)
		return nil
	}}
)

func TestMain(m *testing.M) {
	child.Serve(connectChild, dialChild, sendtoChild)
	os.Exit(m.Run())
}

// sentBytes and replyBytes are connection i's payload each way: all
// different, so that a flow with another's counts is caught.
func sentBytes(i int) int  { return 100 + 37*i }
func replyBytes(i int) int { return 50 + 11*i }

func shortConnection(addr string, i int) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, sentBytes(i))); err != nil {
		return 0, err
	}
	time.Sleep(5 * time.Millisecond)
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		return 0, err
	}
	if got != int64(replyBytes(i)) {
		return 0, fmt.Errorf("reply of %d bytes, want %d", got, replyBytes(i))
	}
	return c.LocalAddr().(*net.TCPAddr).Port, nil
}

// open opens a capture, skipping where the host cannot run it.
func open(t *testing.T, opts Options) *Capture {
	t.Helper()
	if opts.Sizes == (Sizes{}) {
		opts.Sizes = DefaultSizes
		// The programs see the whole host's connections, other tests'
		// and builds' too: room for their bursts.
		opts.Sizes.RingBuffer = 32 << 20
	}
	c, err := Open(opts)
	kerneltest.RequireBPF(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

// serve accepts on ln until it closes: it reads each connection to its
// end, then answers with replyBytes of the connection's index, which the
// client's payload size tells.
func serve(ln net.Listener) {
	for {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer s.Close()
			n, _ := io.Copy(io.Discard, s)
			i := (int(n) - 100) / 37
			s.Write(make([]byte, replyBytes(i)))
		}()
	}
}

// runChild runs a helper to its end and returns its output lines.
func runChild(t *testing.T, h child.Helper, args ...string) (pid int, lines []string) {
	t.Helper()
	cmd, err := h.Command(context.Background(), args...)
	require.NoError(t, err)
	out, err := cmd.Output()
	require.NoError(t, err, "%s child", h.Name)
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	return cmd.Process.Pid, lines
}

// collect reads flows and drained connections until done says enough,
// failing after 10 s.
func collect(t *testing.T, c *Capture, done func(flows []model.ConnFlow, conns []Conn) bool) ([]model.ConnFlow, []Conn) {
	t.Helper()
	var flows []model.ConnFlow
	var conns []Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		flows = c.Flows(flows)
		conns = c.Drain(conns)
		if done(flows, conns) {
			return flows, conns
		}
		if time.Now().After(deadline) {
			st, _ := c.Stats()
			t.Fatalf("capture did not hand over what the test waits for within 10s: %d flows, %d connections; counters %+v", len(flows), len(conns), st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKernelShortConnections: 200 connections of about 5 ms each, from a
// child process to a listener of the test's, over IPv4 and IPv6 loopback:
// every one is seen at both ends, the client end attributed to the child,
// the server end to the test, with the exact payload bytes each way, an
// orderly close and its times.
func TestKernelShortConnections(t *testing.T) {
	c := open(t, Options{KeepFlows: true})
	for _, network := range []struct{ name, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(network.name, func(t *testing.T) {
			const n = 200
			ln, err := net.Listen(network.name, network.addr)
			require.NoError(t, err)
			defer ln.Close()
			go serve(ln)
			lport := uint16(ln.Addr().(*net.TCPAddr).Port)
			before := time.Now()
			pid, lines := runChild(t, connectChild, ln.Addr().String(), strconv.Itoa(n))
			require.Len(t, lines, n)
			index := map[uint16]int{}
			for i, l := range lines {
				p, err := strconv.Atoi(l)
				require.NoError(t, err)
				index[uint16(p)] = i
			}
			type ends struct{ out, in *model.ConnFlow }
			got := map[uint16]*ends{}
			opened := map[uint16]bool{}
			collect(t, c, func(flows []model.ConnFlow, conns []Conn) bool {
				for i := range flows {
					f := &flows[i]
					var port uint16
					switch {
					case f.Socket.RemotePort == lport && f.Direction == model.Outbound:
						port = f.Socket.LocalPort
					case f.Socket.LocalPort == lport && f.Direction == model.Inbound:
						port = f.Socket.RemotePort
					default:
						continue
					}
					if got[port] == nil {
						got[port] = &ends{}
					}
					if f.Direction == model.Outbound {
						got[port].out = f
					} else {
						got[port].in = f
					}
				}
				for _, cn := range conns {
					if cn.Socket.RemotePort == lport && cn.Direction == model.Outbound && cn.Owner.PID == int32(pid) {
						opened[cn.Socket.LocalPort] = true
					}
				}
				complete := 0
				for _, e := range got {
					if e.out != nil && e.in != nil {
						complete++
					}
				}
				return complete >= n
			})
			for port, i := range index {
				e := got[port]
				require.NotNil(t, e, "connection %d (port %d) seen", i, port)
				require.NotNil(t, e.out, "connection %d: client end", i)
				require.NotNil(t, e.in, "connection %d: server end", i)
				require.NotNil(t, e.out.Process, "connection %d: client end attributed", i)
				require.NotNil(t, e.in.Process, "connection %d: server end attributed", i)
				assert.EqualValues(t, pid, e.out.Process.PID, "connection %d: the child connected", i)
				assert.EqualValues(t, os.Getpid(), e.in.Process.PID, "connection %d: the test accepted", i)
				assert.Equal(t, []uint64{uint64(sentBytes(i)), uint64(replyBytes(i))}, []uint64{e.out.BytesSent, e.out.BytesReceived}, "connection %d: client's bytes", i)
				assert.Equal(t, []uint64{uint64(replyBytes(i)), uint64(sentBytes(i))}, []uint64{e.in.BytesSent, e.in.BytesReceived}, "connection %d: server's bytes", i)
				assert.Equal(t, model.EndFIN, e.out.Ended, "connection %d", i)
				assert.Equal(t, model.EndFIN, e.in.Ended, "connection %d", i)
				assert.Positive(t, e.out.SegsSent)
				assert.Positive(t, e.out.SegsReceived)
				assert.False(t, e.out.Start.Before(before), "connection %d starts after the test did", i)
				assert.GreaterOrEqual(t, e.out.End.Sub(e.out.Start), 5*time.Millisecond, "connection %d lasted its 5 ms", i)
				assert.True(t, opened[port], "connection %d: drained as the child's outbound connection", i)
			}
		})
	}
}

// TestKernelConnectAndExit: processes that connect and exit at once are
// attributed, although no /proc entry is left to look them up in.
func TestKernelConnectAndExit(t *testing.T) {
	c := open(t, Options{KeepFlows: true})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, s); s.Close() }()
		}
	}()
	const n = 30
	want := map[uint16]int{} // client port -> pid
	for range n {
		pid, lines := runChild(t, dialChild, ln.Addr().String())
		require.Len(t, lines, 1)
		port, err := strconv.Atoi(lines[0])
		require.NoError(t, err)
		want[uint16(port)] = pid
	}
	seen := map[uint16]int32{}
	collect(t, c, func(flows []model.ConnFlow, _ []Conn) bool {
		for _, f := range flows {
			if _, ok := want[f.Socket.LocalPort]; ok && f.Direction == model.Outbound && f.Process != nil {
				seen[f.Socket.LocalPort] = f.Process.PID
			}
		}
		return len(seen) == n
	})
	for port, pid := range want {
		assert.EqualValues(t, pid, seen[port], "port %d", port)
	}
}

// TestKernelRefused: a connect to a port nobody listens on is a flow that
// ended refused, attributed to the test, with no bytes.
func TestKernelRefused(t *testing.T) {
	c := open(t, Options{KeepFlows: true})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	_, err = net.Dial("tcp4", addr.String())
	require.Error(t, err)
	flows, conns := collect(t, c, func(flows []model.ConnFlow, _ []Conn) bool {
		for _, f := range flows {
			if f.Socket.RemotePort == uint16(addr.Port) {
				return true
			}
		}
		return false
	})
	for _, f := range flows {
		if f.Socket.RemotePort != uint16(addr.Port) {
			continue
		}
		assert.Equal(t, model.EndRefused, f.Ended)
		assert.Equal(t, model.Outbound, f.Direction)
		require.NotNil(t, f.Process)
		assert.EqualValues(t, os.Getpid(), f.Process.PID)
		assert.Zero(t, f.BytesSent+f.BytesReceived)
		assert.Equal(t, "refused", f.Ended.String())
	}
	for _, cn := range conns {
		assert.NotEqual(t, uint16(addr.Port), cn.Socket.RemotePort, "a connection that never opened is not one to report: %+v", cn)
	}
}

// TestKernelDestroyRecoversClose: a close connbeat_state did not hand
// over (the kernel skips its run when it interrupts itself on a CPU; here
// its conns entry is put back after the close, as a skipped run leaves
// it) is handed over when the socket is destroyed, once, with the entry's
// owner and the last state the entry saw, and counted.
func TestKernelDestroyRecoversClose(t *testing.T) {
	c := open(t, Options{KeepFlows: true})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: addr.Port})
	require.ErrorIs(t, err, unix.ECONNREFUSED)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	require.NoError(t, err)
	// The refused connect's own close, as connbeat_state saw it.
	collect(t, c, func(flows []model.ConnFlow, _ []Conn) bool {
		for _, f := range flows {
			if f.Socket.RemotePort == uint16(addr.Port) {
				return true
			}
		}
		return false
	})
	before, err := c.Stats()
	require.NoError(t, err)

	const pid = 0x7ffffff0
	entry := captureConn{Owner: captureOwner{Tgid: pid, Uid: 4321}, Flags: 2 /* F_OWNER */}
	for i, b := range []byte("recovered") {
		entry.Owner.Comm[i] = int8(b)
	}
	require.NoError(t, c.progs.maps.ConnbeatConns.Update(cookie, entry, ebpf.UpdateNoExist))
	require.NoError(t, unix.Close(fd))
	var got []model.ConnFlow
	collect(t, c, func(flows []model.ConnFlow, _ []Conn) bool {
		got = got[:0]
		for _, f := range flows {
			if f.Process != nil && f.Process.PID == pid {
				got = append(got, f)
			}
		}
		return len(got) > 0
	})
	require.Len(t, got, 1, "handed over once")
	f := got[0]
	assert.Equal(t, "recovered", f.Process.Name)
	assert.EqualValues(t, 4321, f.Process.UID)
	assert.Equal(t, model.Outbound, f.Direction)
	assert.Equal(t, model.EndFailed, f.Ended, "never established, its error taken by connect")
	after, err := c.Stats()
	require.NoError(t, err)
	assert.Equal(t, before.RecoveredCloses+1, after.RecoveredCloses)
	var left captureConn
	assert.ErrorIs(t, c.progs.maps.ConnbeatConns.Lookup(cookie, &left), ebpf.ErrKeyNotExist, "the entry is deleted")
}

// TestKernelUDPSendto: a child sending datagrams with sendto and no
// connect is a UDP pair of its own, attributed to it, with its datagrams
// counted; once idle for the flow timeout, its flow ends.
func TestKernelUDPSendto(t *testing.T) {
	// Long enough for a slow machine (or -race) to get from the child's
	// last datagram to the first Reconcile within it.
	const timeout = 3 * time.Second
	c := open(t, Options{KeepFlows: true, UDPFlowTimeout: timeout})
	for _, network := range []struct{ name, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(network.name, func(t *testing.T) {
			srv, err := net.ListenPacket(network.name, network.addr)
			require.NoError(t, err)
			defer srv.Close()
			dst := srv.LocalAddr().(*net.UDPAddr)
			start := time.Now()
			pid, lines := runChild(t, sendtoChild, dst.String(), "3")
			require.Len(t, lines, 1)
			port, err := strconv.Atoi(lines[0])
			require.NoError(t, err)
			_, conns := collect(t, c, func(_ []model.ConnFlow, conns []Conn) bool {
				for _, cn := range conns {
					if cn.Socket.Transport == model.UDP && cn.Socket.RemotePort == uint16(dst.Port) && cn.Socket.LocalPort == uint16(port) {
						return true
					}
				}
				return false
			})
			for _, cn := range conns {
				if cn.Socket.Transport != model.UDP || cn.Socket.RemotePort != uint16(dst.Port) {
					continue
				}
				assert.EqualValues(t, pid, cn.Owner.PID)
				assert.Equal(t, model.Outbound, cn.Direction)
				assert.Equal(t, dst.IP.String(), cn.Socket.RemoteIP.String())
			}
			// Active within the window: the slow pass lists it.
			active, err := c.Reconcile(time.Now(), start, nil)
			require.NoError(t, err)
			assert.True(t, hasUDP(active, pid, dst.Port), "reconcile lists the pair active: %+v", active)

			time.Sleep(timeout + 500*time.Millisecond)
			active, err = c.Reconcile(time.Now(), start, nil)
			require.NoError(t, err)
			assert.False(t, hasUDP(active, pid, dst.Port), "idle past the timeout")
			var flow *model.ConnFlow
			for _, f := range c.Flows(nil) {
				if f.Socket.Transport == model.UDP && f.Socket.RemotePort == uint16(dst.Port) {
					flow = &f
				}
			}
			require.NotNil(t, flow, "the idle pair's flow ended")
			assert.Equal(t, model.EndTimeout, flow.Ended)
			assert.EqualValues(t, 3, flow.SegsSent, "three datagrams")
			require.NotNil(t, flow.Process)
			assert.EqualValues(t, pid, flow.Process.PID)
		})
	}
}

func hasUDP(conns []Conn, pid, port int) bool {
	for _, cn := range conns {
		if cn.Socket.Transport == model.UDP && cn.Owner.PID == int32(pid) && cn.Socket.RemotePort == uint16(port) {
			return true
		}
	}
	return false
}

// burst makes n short connections to a server of its own, one after the
// other: four records each (both ends' opens and closes).
func burst(t *testing.T, n int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go serve(ln)
	for i := range n {
		_, err := shortConnection(ln.Addr().String(), i)
		require.NoError(t, err)
	}
}

// TestKernelLostCounted: with a one-page ring buffer that nobody reads,
// the records that find it full are counted in the kernel, and reading
// resumes once the buffer drains.
func TestKernelLostCounted(t *testing.T) {
	c := open(t, Options{Sizes: Sizes{Connections: 1024, Listeners: 64, UDPPairs: 256, RingBuffer: uint32(os.Getpagesize())}, paused: true})
	burst(t, 100)
	st, err := c.Stats()
	require.NoError(t, err)
	// 100 connections are 400 records; a page holds a few dozen.
	assert.Greater(t, st.Lost, uint64(300), "records lost to the full buffer")
	assert.Zero(t, st.Records)

	c.start()
	_, conns := collect(t, c, func(_ []model.ConnFlow, conns []Conn) bool { return len(conns) > 0 })
	assert.NotEmpty(t, conns)
}

// TestKernelListener: a listen is handed over with the process that
// listened; its close replaces it when no Drain came between, so that a
// listener that lived between two polls is still seen once.
func TestKernelListener(t *testing.T) {
	c := open(t, Options{})
	listeners := func(port uint16) func([]model.ConnFlow, []Conn) bool {
		return func(_ []model.ConnFlow, conns []Conn) bool {
			for _, cn := range conns {
				if cn.Direction == model.Listening && cn.Socket.LocalPort == port {
					return true
				}
			}
			return false
		}
	}
	check := func(conns []Conn, port uint16, closed bool) {
		t.Helper()
		n := 0
		for _, cn := range conns {
			if cn.Direction != model.Listening || cn.Socket.LocalPort != port {
				continue
			}
			n++
			assert.EqualValues(t, os.Getpid(), cn.Owner.PID)
			assert.Equal(t, "::1", cn.Socket.LocalIP.String())
			assert.Equal(t, model.StateListen, cn.Socket.State)
			assert.NotZero(t, cn.Socket.NetNS)
			assert.Equal(t, closed, cn.Closed)
		}
		assert.Equal(t, 1, n, "one entry for port %d", port)
	}

	ln, err := net.Listen("tcp6", "[::1]:0")
	require.NoError(t, err)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	_, conns := collect(t, c, listeners(port))
	check(conns, port, false)
	ln.Close()
	_, conns = collect(t, c, listeners(port))
	check(conns, port, true)

	ln, err = net.Listen("tcp6", "[::1]:0")
	require.NoError(t, err)
	port = uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	_, conns = collect(t, c, listeners(port))
	check(conns, port, true)
}

// TestKernelWithoutNetAdmin runs itself again in a child that dropped
// CAP_NET_ADMIN and CAP_SYS_ADMIN from its capabilities (keeping CAP_BPF
// and CAP_PERFMON): the UDP hooks cannot load, the capture says why and
// still sees TCP.
func TestKernelWithoutNetAdmin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop capabilities from")
	}
	child.RunTest(t, func(t *testing.T) {
		// Capabilities are per thread: keep this goroutine on the thread
		// that drops them, which loads the programs.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		require.NoError(t, unix.Capget(&hdr, &data[0]))
		for _, c := range []uint{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN} {
			data[c/32].Effective &^= 1 << (c % 32)
			data[c/32].Permitted &^= 1 << (c % 32)
		}
		require.NoError(t, unix.Capset(&hdr, &data[0]))

		c := open(t, Options{KeepFlows: true})
		require.Error(t, c.UDPUnavailable())
		assert.ErrorContains(t, c.UDPUnavailable(), "CAP_NET_ADMIN")
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		go serve(ln)
		port, err := shortConnection(ln.Addr().String(), 3)
		require.NoError(t, err)
		collect(t, c, func(flows []model.ConnFlow, _ []Conn) bool {
			for _, f := range flows {
				if f.Socket.LocalPort == uint16(port) && f.Process != nil && f.Process.PID == int32(os.Getpid()) {
					return true
				}
			}
			return false
		})
	})
}

// TestKernelDrainFlushes: the programs do not wake the reader for each
// record, and here its timer never fires within the test; Drain and
// Flows still hand over, at once, a connection that opened and closed
// before they were called.
func TestKernelDrainFlushes(t *testing.T) {
	c := open(t, Options{KeepFlows: true, ReadInterval: time.Hour})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cl, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	port := uint16(cl.LocalAddr().(*net.TCPAddr).Port)
	s, err := ln.Accept()
	require.NoError(t, err)
	require.NoError(t, cl.Close())
	require.NoError(t, s.Close())
	// Let the kernel finish the close on both ends (loopback: at once).
	time.Sleep(50 * time.Millisecond)

	seen := false
	for _, cn := range c.Drain(nil) {
		if cn.Socket.LocalPort == port && cn.Closed {
			seen = true
		}
	}
	assert.True(t, seen, "the client's connection, closed before Drain")
	seen = false
	for _, f := range c.Flows(nil) {
		if f.Socket.LocalPort == port {
			seen = true
		}
	}
	assert.True(t, seen, "the client's flow, ended before Flows")
}

// TestKernelReady: Ready says when a read of the ring buffer left flows
// to take, or ReadyPending connections, without a Drain or Flows asking,
// and ReadFlows then has them; a capture without flows and below
// ReadyPending stays quiet.
func TestKernelReady(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go serve(ln)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	quiet := open(t, Options{ReadyPending: 1 << 20, ReadInterval: 50 * time.Millisecond})
	flows := open(t, Options{KeepFlows: true, ReadInterval: 50 * time.Millisecond})
	pending := open(t, Options{ReadyPending: 8, ReadInterval: 50 * time.Millisecond})
	for i := range 4 {
		_, err := shortConnection(ln.Addr().String(), i)
		require.NoError(t, err)
	}
	for name, c := range map[string]*Capture{"flows": flows, "pending": pending} {
		select {
		case <-c.Ready():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no token within 5 s of the connections", name)
		}
	}
	var got []model.ConnFlow
	require.Eventually(t, func() bool {
		for _, f := range flows.ReadFlows(nil) {
			if f.Socket.RemotePort == port || f.Socket.LocalPort == port {
				got = append(got, f)
			}
		}
		return len(got) == 8
	}, 5*time.Second, 50*time.Millisecond, "both ends of the 4 connections")
	assert.GreaterOrEqual(t, pending.Pending(), 8)
	select {
	case <-quiet.Ready():
		t.Fatal("a token without flows kept or enough connections pending")
	default:
	}
}

// TestKernelWakeupReads: once a sixteenth of the ring buffer waits, the
// programs wake the reader, whose timer does not fire in time and whom
// no Drain asks: a burst is read while it lasts, not lost.
func TestKernelWakeupReads(t *testing.T) {
	sizes := DefaultSizes
	// A sixteenth: about 30 records; a quarter, about 110. The burst's
	// 60 records are between the two.
	sizes.RingBuffer = 64 << 10
	// Its timer fires after the test gives up.
	c := open(t, Options{Sizes: sizes, ReadInterval: 10 * time.Second})
	burst(t, 15)
	var st Stats
	var err error
	require.Eventually(t, func() bool {
		st, err = c.Stats()
		require.NoError(t, err)
		return st.Records >= 30
	}, 5*time.Second, 10*time.Millisecond, "records read without a Drain")
	assert.Zero(t, st.Lost)
}
