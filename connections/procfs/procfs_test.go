package procfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestProcFSFixture(t *testing.T) {
	src, err := Open("testdata/proc")
	require.NoError(t, err)
	got, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	assert.Equal(t, []model.Socket{
		{LocalIP: addr("0.0.0.0"), RemoteIP: addr("0.0.0.0"), LocalPort: 80, State: model.StateListen, Inode: 1001},
		{LocalIP: addr("127.0.0.1"), RemoteIP: addr("127.0.0.2"), LocalPort: 80, RemotePort: 40000, State: model.StateEstablished, UID: 1000, Inode: 1002},
		{LocalIP: addr("127.0.0.1"), RemoteIP: addr("127.0.0.1"), LocalPort: 40001, RemotePort: 80, State: model.StateTimeWait},
		{LocalIP: addr("10.0.0.10"), RemoteIP: addr("10.0.0.9"), LocalPort: 443, RemotePort: 50000, State: model.StateEstablished, UID: 33, Inode: 1003},
		{LocalIP: addr("::"), RemoteIP: addr("::"), LocalPort: 22, State: model.StateListen, Inode: 2001},
		{LocalIP: addr("::1"), RemoteIP: addr("::1"), LocalPort: 8080, RemotePort: 40002, State: model.StateEstablished, UID: 1000, Inode: 2002},
		// IPv4-mapped addresses of a dual-stack socket come out as IPv4
		{LocalIP: addr("127.0.0.1"), RemoteIP: addr("127.0.0.2"), LocalPort: 22, RemotePort: 40003, State: model.StateEstablished, Inode: 2003},
		// all 16 bytes of an IPv6 address (the old connbeat kept 4)
		{LocalIP: addr("2001:db8::1"), RemoteIP: addr("2001:db8::2"), LocalPort: 22, RemotePort: 50001, State: model.StateEstablished, Inode: 2004},
		// net/udp: a bound socket (CLOSE) and a connected one; the line in
		// LISTEN, a state no UDP socket has, is left out
		{Transport: model.UDP, LocalIP: addr("0.0.0.0"), RemoteIP: addr("0.0.0.0"), LocalPort: 53, State: model.StateClose, UID: 101, Inode: 3001},
		{Transport: model.UDP, LocalIP: addr("127.0.0.1"), RemoteIP: addr("127.0.0.1"), LocalPort: 41394, RemotePort: 53, State: model.StateEstablished, UID: 1000, Inode: 3002},
		// net/udp6: ::1 bound, and an IPv4-mapped connected socket unmapped
		{Transport: model.UDP, LocalIP: addr("::1"), RemoteIP: addr("::"), LocalPort: 5353, State: model.StateClose, Inode: 4001},
		{Transport: model.UDP, LocalIP: addr("127.0.0.1"), RemoteIP: addr("127.0.0.2"), LocalPort: 49152, RemotePort: 5353, State: model.StateEstablished, Inode: 4002},
	}, got)
}

// TestProcFSTransports: a transport left out is not read at all: its
// files are made unreadable garbage, and the read still works.
func TestProcFSTransports(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "net"), 0o755))
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		data, err := os.ReadFile(filepath.Join("testdata/proc/net", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, "net", name), data, 0o644))
	}
	count := func(opts Options) (tcp, udp int, err error) {
		src, err := OpenWith(root, opts)
		require.NoError(t, err)
		got, err := src.Sockets(context.Background(), nil)
		for _, s := range got {
			if s.Transport == model.UDP {
				udp++
			} else {
				tcp++
			}
		}
		return tcp, udp, err
	}
	tcp, udp, err := count(Options{})
	require.NoError(t, err)
	assert.Equal(t, []int{8, 4}, []int{tcp, udp}, "both by default")

	garbage := []byte("header\n   0: 0100007F:XYZ 00000000:0000 07 0:0 0:0 0 0 0 1 1\n")
	for _, name := range []string{"udp", "udp6"} {
		require.NoError(t, os.WriteFile(filepath.Join(root, "net", name), garbage, 0o644))
	}
	_, _, err = count(Options{})
	require.ErrorContains(t, err, "reading net/udp", "garbage where UDP is read")
	tcp, udp, err = count(Options{Transports: model.TransportsOf(model.TCP)})
	require.NoError(t, err, "net/udp must not be read without UDP")
	assert.Equal(t, []int{8, 0}, []int{tcp, udp})

	require.NoError(t, os.Remove(filepath.Join(root, "net", "tcp")))
	tcp, udp, err = count(Options{Transports: model.TransportsOf(model.TCP)})
	require.ErrorContains(t, err, "reading net/tcp")
	require.NoError(t, os.WriteFile(filepath.Join(root, "net", "tcp6"), garbage, 0o644))
	for _, name := range []string{"udp", "udp6"} {
		data, err := os.ReadFile(filepath.Join("testdata/proc/net", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, "net", name), data, 0o644))
	}
	tcp, udp, err = count(Options{Transports: model.TransportsOf(model.UDP)})
	require.NoError(t, err, "net/tcp and tcp6 must not be read without TCP")
	assert.Equal(t, []int{0, 4}, []int{tcp, udp})
}

func TestProcFSWithoutTCP6(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "net"), 0o755))
	data, err := os.ReadFile("testdata/proc/net/tcp")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "net", "tcp"), data, 0o644))

	src, err := Open(root)
	require.NoError(t, err)
	got, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err, "IPv6 disabled is not an error")
	assert.Len(t, got, 4)
}

func TestProcFSErrors(t *testing.T) {
	t.Run("no net/tcp", func(t *testing.T) {
		src, err := Open(t.TempDir())
		require.NoError(t, err)
		_, err = src.Sockets(context.Background(), nil)
		require.ErrorContains(t, err, "reading net/tcp")
	})
	t.Run("malformed line", func(t *testing.T) {
		root := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(root, "net"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, "net", "tcp"),
			[]byte("header\n   0: 0100007F:XYZ 00000000:0000 0A 0:0 0:0 0 0 0 1 1\n"), 0o644))
		src, err := Open(root)
		require.NoError(t, err)
		_, err = src.Sockets(context.Background(), nil)
		require.ErrorContains(t, err, "reading net/tcp")
	})
	t.Run("cancelled", func(t *testing.T) {
		src, err := Open("testdata/proc")
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = src.Sockets(ctx, nil)
		require.ErrorIs(t, err, context.Canceled)
	})
}

// FuzzProcFSNetTCP feeds arbitrary bytes as /proc/net/tcp: the source must
// never panic, and every socket it returns must have a valid address and
// state (lines the kernel would not write are skipped or fail the read).
func FuzzProcFSNetTCP(f *testing.F) {
	for _, name := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(filepath.Join("testdata/proc/net", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
	}
	for _, name := range []string{"udp", "udp6"} {
		data, err := os.ReadFile(filepath.Join("testdata/proc/net", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, true)
	}
	f.Add([]byte("h\n 0: 0100007F:0050 0200007F:9C40 FF 0:0 0:0 0 0 0 1\n"), false)
	f.Add([]byte("h\n 0: 0100007F:FFFFF 0200007F:9C40 01 0:0 0:0 0 0 0 1\n"), false)
	f.Add([]byte("h\n 0: 01007F:0050 0200007F:9C40 01 0:0 0:0 0 0 0 1\n"), true)
	f.Add([]byte("h\n 0: 0100007F:0050 0200007F:9C40 0A 0:0 0:0 0 0 0 1\n"), true)
	f.Add([]byte(""), false)
	root, src := fuzzRoot(f)
	f.Fuzz(func(t *testing.T, data []byte, udp bool) {
		name, other := "tcp", "udp"
		if udp {
			name, other = other, name
		}
		if err := os.WriteFile(filepath.Join(root, "net", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		// The other transport's file stays empty: its header only.
		if err := os.WriteFile(filepath.Join(root, "net", other), []byte("h\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := src.Sockets(context.Background(), nil)
		if err != nil {
			return
		}
		for _, s := range got {
			if s.Transport != map[bool]model.Transport{false: model.TCP, true: model.UDP}[udp] {
				t.Fatalf("socket of %s in net/%s: %+v", s.Transport, name, s)
			}
			if !s.LocalIP.IsValid() || !s.Transport.HasState(s.State) || s.LocalIP.Is4In6() {
				t.Fatalf("invalid socket %+v", s)
			}
		}
	})
}

// kernelLine formats one /proc/net/tcp or tcp6 line as the kernel's
// get_tcp4_sock and get_tcp6_sock do: each 32-bit word of an address in
// the machine's byte order, "%08X" (four of them for IPv6), then ":%04X"
// for the port.
func kernelLine(local, remote netip.Addr, lport, rport uint16, state uint8, uid uint32, inode uint64) string {
	hexAddr := func(a netip.Addr) string {
		b := a.AsSlice()
		var out strings.Builder
		for i := 0; i < len(b); i += 4 {
			fmt.Fprintf(&out, "%08X", binary.NativeEndian.Uint32(b[i:i+4]))
		}
		return out.String()
	}
	return fmt.Sprintf("%4d: %s:%04X %s:%04X %02X %08X:%08X %02X:%08X %08X %5d %8d %d %d %016x %d %d %d %d %d\n",
		0, hexAddr(local), lport, hexAddr(remote), rport, state, 0, 0, 0, 0, 0, uid, 0, inode, 1, 0, 20, 4, 30, 10, -1)
}

// FuzzProcFSLine formats a socket as the kernel writes it into net/tcp (or
// net/tcp6 when v6; net/udp and udp6 when udp) and reads it back: the same
// socket, with an IPv4-mapped IPv6 address unmapped; a state the kernel
// does not give that transport is left out.
func FuzzProcFSLine(f *testing.F) {
	f.Add(netip.MustParseAddr("127.0.0.1").AsSlice(), netip.MustParseAddr("127.0.0.2").AsSlice(), uint16(80), uint16(40000), uint8(1), uint32(1000), uint64(1002), false)
	f.Add(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), uint16(22), uint16(0), uint8(10), uint32(0), uint64(1<<40), false)
	f.Add([]byte{0, 0, 0, 0}, []byte{}, uint16(0xffff), uint16(1), uint8(13), uint32(1<<31), uint64(0), false)
	f.Add([]byte{0, 0, 0, 0}, []byte{}, uint16(53), uint16(0), uint8(7), uint32(101), uint64(7), true)
	f.Add(netip.MustParseAddr("::ffff:127.0.0.1").AsSlice(), netip.MustParseAddr("::1").AsSlice(), uint16(5353), uint16(9), uint8(1), uint32(0), uint64(8), true)
	f.Add([]byte{127, 0, 0, 1}, []byte{}, uint16(53), uint16(0), uint8(10), uint32(101), uint64(7), true)
	root, src := fuzzRoot(f)
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	f.Fuzz(func(t *testing.T, lraw, rraw []byte, lport, rport uint16, state uint8, uid uint32, inode uint64, udp bool) {
		// Both ends of one family: 4 bytes, or 16.
		n := 4
		if len(lraw) > 4 {
			n = 16
		}
		addrOf := func(raw []byte) netip.Addr {
			b := make([]byte, n)
			copy(b, raw)
			a, _ := netip.AddrFromSlice(b)
			return a
		}
		local, remote := addrOf(lraw), addrOf(rraw)
		files := map[string]string{"tcp": header, "tcp6": header, "udp": header, "udp6": header}
		transport, name := model.TCP, "tcp"
		if udp {
			transport, name = model.UDP, "udp"
		}
		if n == 16 {
			name += "6"
		}
		line := kernelLine(local, remote, lport, rport, state, uid, inode)
		files[name] += line
		for file, body := range files {
			require.NoError(t, os.WriteFile(filepath.Join(root, "net", file), []byte(body), 0o644))
		}
		got, err := src.Sockets(context.Background(), nil)
		require.NoError(t, err, "%q", line)
		if !transport.HasState(model.State(state)) {
			require.Empty(t, got, "%q", line)
			return
		}
		want := model.Socket{LocalIP: local.Unmap(), RemoteIP: remote.Unmap(), LocalPort: lport, RemotePort: rport,
			State: model.State(state), Transport: transport, UID: uid, Inode: inode}
		require.Equal(t, []model.Socket{want}, got, "%q", line)
	})
}

// fuzzRoot makes an empty proc root for a fuzz target to write net/tcp
// and net/tcp6 into, and a source reading it.
func fuzzRoot(f *testing.F) (string, *Source) {
	root := f.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "net"), 0o755); err != nil {
		f.Fatal(err)
	}
	src, err := Open(root)
	if err != nil {
		f.Fatal(err)
	}
	return root, src
}

// socketInode returns the inode the kernel lists for a connection's socket.
func socketInode(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	var st syscall.Stat_t
	var serr error
	require.NoError(t, raw.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }))
	require.NoError(t, serr)
	return st.Ino
}

func TestProcFSRealKernel(t *testing.T) {
	type want struct {
		local, remote netip.AddrPort
		state         model.State
	}
	wants := map[uint64]want{}
	for _, network := range []string{"tcp4", "tcp6"} {
		host := "127.0.0.1"
		if network == "tcp6" {
			host = "::1"
		}
		ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
		if err != nil {
			t.Skipf("no %s loopback here: %v", network, err)
		}
		defer ln.Close()
		wants[socketInode(t, ln.(*net.TCPListener))] = want{local: ln.Addr().(*net.TCPAddr).AddrPort(), state: model.StateListen}

		c, err := net.Dial(network, ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		s, err := ln.Accept()
		require.NoError(t, err)
		defer s.Close()
		for _, conn := range []net.Conn{c, s} {
			wants[socketInode(t, conn.(*net.TCPConn))] = want{
				local:  conn.LocalAddr().(*net.TCPAddr).AddrPort(),
				remote: conn.RemoteAddr().(*net.TCPAddr).AddrPort(),
				state:  model.StateEstablished,
			}
		}
	}

	src, err := Open("/proc")
	require.NoError(t, err)
	got, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	found := map[uint64]want{}
	for _, s := range got {
		if _, ok := wants[s.Inode]; ok {
			w := want{local: netip.AddrPortFrom(s.LocalIP, s.LocalPort), state: s.State}
			if s.State != model.StateListen {
				w.remote = netip.AddrPortFrom(s.RemoteIP, s.RemotePort)
			}
			found[s.Inode] = w
			assert.Equal(t, uint32(os.Geteuid()), s.UID)
		}
	}
	// Listeners' remote ends are unset in wants and zero in found.
	for ino, w := range wants {
		w.local = netip.AddrPortFrom(w.local.Addr().Unmap(), w.local.Port())
		if w.remote.IsValid() {
			w.remote = netip.AddrPortFrom(w.remote.Addr().Unmap(), w.remote.Port())
		}
		wants[ino] = w
	}
	assert.Equal(t, wants, found)
}

// TestProcFSRealKernelUDP lists the test's UDP sockets from net/udp and
// udp6: bound listeners on 127.0.0.1, ::1 (IPv6 only) and [::]
// (dual-stack), clients connected to each (one through an IPv4-mapped
// address), and a connected socket on a listener's port.
func TestProcFSRealKernelUDP(t *testing.T) {
	lb := sockettest.New(t)
	u := lb.UDPFamilies()
	src, err := Open("/proc")
	require.NoError(t, err)
	got, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	ours := lb.Ours(got)
	require.Len(t, ours, sockettest.UDPCount)
	assert.Equal(t, u.Want(t), ours)

	tcpOnly, err := OpenWith("/proc", Options{Transports: model.TransportsOf(model.TCP)})
	require.NoError(t, err)
	got, err = tcpOnly.Sockets(context.Background(), nil)
	require.NoError(t, err)
	assert.Empty(t, lb.Ours(got), "UDP sockets with UDP off")
	for _, s := range got {
		require.Equal(t, model.TCP, s.Transport)
	}
}
