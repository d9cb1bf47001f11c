package workload

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/internal/testkit/child"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	child.Serve(Helper())
	os.Exit(m.Run())
}

// socketInodes lists the socket inodes a process holds.
func socketInodes(t *testing.T, pid int) map[uint64]bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[uint64]bool{}
	for _, e := range entries {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		var ino uint64
		_, err = fmt.Sscanf(target, "socket:[%d]", &ino)
		require.NoError(t, err)
		out[ino] = true
	}
	return out
}

// TestStartHoldsConnections starts a small workload and checks, through
// the children's fd tables and the kernel's socket list, that it holds the
// established connections and listeners it promises, then goes away.
func TestStartHoldsConnections(t *testing.T) {
	w, err := Start(context.Background(), Options{Conns: 300, PerProcess: 120, ListenersPerProcess: 3})
	require.NoError(t, err)
	defer w.Stop()

	pids := w.PIDs()
	require.Len(t, pids, 3, "300 connections at 120 per process")
	assert.Equal(t, 2*300+3*3, w.Sockets)
	held := map[uint64]bool{}
	for _, pid := range pids {
		for ino := range socketInodes(t, pid) {
			held[ino] = true
		}
	}
	require.Len(t, held, w.Sockets)

	src, err := procfs.Open("/proc")
	require.NoError(t, err)
	sockets, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	// Each held socket once: /proc/net/tcp, read in several chunks while
	// other tests' sockets come and go, may list one twice.
	states := map[string]int{}
	v6 := 0
	counted := map[uint64]bool{}
	for _, s := range sockets {
		if !held[s.Inode] || counted[s.Inode] {
			continue
		}
		counted[s.Inode] = true
		states[s.State.String()]++
		assert.True(t, s.LocalIP.IsLoopback(), "%v", s.LocalIP)
		if s.LocalIP.Is6() {
			v6++
		}
	}
	assert.Equal(t, map[string]int{"established": 600, "listen": 9}, states)
	// Every 4th connection is on ::1 (both its sockets), plus one IPv6
	// listener per child.
	assert.Equal(t, 2*75+3, v6)

	w.Stop()
	for _, pid := range pids {
		assert.Eventually(t, func() bool {
			return syscall.Kill(pid, 0) == syscall.ESRCH
		}, 10*time.Second, 20*time.Millisecond, "child %d exits", pid)
	}
}

func TestDecodeSpec(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
		err  string
	}{
		{in: "10,5,4", want: Spec{Conns: 10, Listeners: 5, IPv6Every: 4}},
		{in: "10,0,0", want: Spec{Conns: 10, Listeners: 2}},
		{in: "10,5", err: "want conns,listeners,ipv6every"},
		{in: "10,-1,4", err: "field 2 is not a count"},
		{in: "x,1,1", err: "field 1 is not a count"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := decodeSpec(tt.in)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			again, err := decodeSpec(got.encode())
			require.NoError(t, err)
			assert.Equal(t, got, again)
		})
	}
}

// TestStartNetnsPerProcess: with NetnsPerProcess each child holds its
// connections in a network namespace of its own (lo up), none of them the
// test's, with the same sockets as without.
func TestStartNetnsPerProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a child in a new network namespace needs root (CAP_SYS_ADMIN)")
	}
	w, err := Start(context.Background(), Options{Conns: 90, PerProcess: 30, ListenersPerProcess: 3, NetnsPerProcess: true})
	require.NoError(t, err)
	defer w.Stop()
	assert.Equal(t, 2*90+3*3, w.Sockets)
	own, err := os.Readlink("/proc/self/ns/net")
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, pid := range w.PIDs() {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		require.NoError(t, err)
		assert.NotEqual(t, own, ns)
		assert.False(t, seen[ns], "namespace %s shared", ns)
		seen[ns] = true
		// The child's sockets, read through its own /proc/PID/net.
		src, err := procfs.Open(fmt.Sprintf("/proc/%d", pid))
		require.NoError(t, err)
		sockets, err := src.Sockets(context.Background(), nil)
		require.NoError(t, err)
		held := socketInodes(t, pid)
		n := 0
		for _, s := range sockets {
			if held[s.Inode] {
				n++
			}
		}
		assert.Equal(t, 2*30+3, n, "child %d's sockets in its namespace", pid)
	}
	assert.Len(t, seen, 3)
}
