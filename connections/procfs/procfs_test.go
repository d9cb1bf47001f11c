package procfs

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
	}, got)
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
		f.Add(data)
	}
	f.Add([]byte("h\n 0: 0100007F:0050 0200007F:9C40 FF 0:0 0:0 0 0 0 1\n"))
	f.Add([]byte("h\n 0: 0100007F:FFFFF 0200007F:9C40 01 0:0 0:0 0 0 0 1\n"))
	f.Add([]byte("h\n 0: 01007F:0050 0200007F:9C40 01 0:0 0:0 0 0 0 1\n"))
	f.Add([]byte(""))
	root := f.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "net"), 0o755); err != nil {
		f.Fatal(err)
	}
	src, err := Open(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(root, "net", "tcp"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := src.Sockets(context.Background(), nil)
		if err != nil {
			return
		}
		for _, s := range got {
			if !s.LocalIP.IsValid() || !s.State.Valid() || s.LocalIP.Is4In6() {
				t.Fatalf("invalid socket %+v", s)
			}
		}
	})
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
