package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/connbeat/connbeat/internal/testkit/netnstest"
)

func TestParseLink(t *testing.T) {
	for in, want := range map[string]uint64{
		"net:[4026531840]": 4026531840,
		"net:[1]":          1,
	} {
		got, ok := ParseLink([]byte(in))
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "net:[]", "net:[0]", "mnt:[4026531840]", "net:[4026531840", "net:[+1]",
		"net:[-1]", "net:[18446744073709551616]", "net:[12a]", "socket:[123]"} {
		_, ok := ParseLink([]byte(in))
		assert.False(t, ok, in)
	}
}

// FuzzParseLink: any bytes as a /proc/PID/ns/net link target: no panic,
// and what parses prints back as the same link.
func FuzzParseLink(f *testing.F) {
	for _, s := range []string{"net:[4026531840]", "net:[]", "net:[0]", "net:[18446744073709551615]", "pid:[1]", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ino, ok := ParseLink(b)
		if !ok {
			return
		}
		s := string(b)
		if ino == 0 || !strings.HasPrefix(s, "net:[") || !strings.HasSuffix(s, "]") ||
			strings.TrimLeft(s[5:len(s)-1], "0") != strconv.FormatUint(ino, 10) {
			t.Fatalf("%q parsed as %d", b, ino)
		}
	})
}

// linkInode reads the namespace inode of a /proc/.../ns/net link.
func linkInode(t *testing.T, path string) uint64 {
	t.Helper()
	l, err := os.Readlink(path)
	require.NoError(t, err)
	ino, ok := ParseLink([]byte(l))
	require.True(t, ok, l)
	return ino
}

// startIn starts `sleep` inside ns and returns its pid once it is there.
func startIn(t *testing.T, ns *netnstest.NS) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, "sleep", "600")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	require.Eventually(t, func() bool {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		return err == nil && l == fmt.Sprintf("net:[%d]", ns.Inode)
	}, 10*time.Second, 10*time.Millisecond, "sleep in the namespace")
	return pid
}

func find(list []Namespace, ino uint64) (Namespace, int) {
	n := 0
	var found Namespace
	for _, ns := range list {
		if ns.Inode == ino {
			found = ns
			n++
		}
	}
	return found, n
}

// TestKernelList: the agent's namespace first, a namespace a process holds
// (with that process), a named one no process holds (by its file), each
// once; a deleted one is gone from the next List.
func TestKernelList(t *testing.T) {
	held, named := netnstest.Add(t), netnstest.Add(t)
	pid := startIn(t, held)
	f, err := New(Options{ProcPath: "/proc", NamedPath: "/run/netns"})
	require.NoError(t, err)
	defer f.Close()

	list, missed, err := f.List(nil)
	require.NoError(t, err)
	// Root reads every process's namespace, except where the kernel
	// refuses even root (PID 1 on some VMs): the same as a plain readlink.
	assert.InDelta(t, unreadable(t), missed.Processes, 2)
	require.NotEmpty(t, list)
	own := linkInode(t, "/proc/thread-self/ns/net")
	assert.Equal(t, Namespace{Inode: own, Path: "/proc/thread-self/ns/net", Own: true}, list[0])
	seen := map[uint64]bool{}
	for _, ns := range list {
		assert.False(t, seen[ns.Inode], "namespace %d listed twice", ns.Inode)
		seen[ns.Inode] = true
	}
	got, _ := find(list, held.Inode)
	require.NotZero(t, got.PID, "the held namespace comes with a process")
	// Any process of it will do; ours is the only one the test started.
	assert.Equal(t, held.Inode, linkInode(t, fmt.Sprintf("/proc/%d/ns/net", got.PID)))
	assert.Equal(t, pid, got.PID)
	got, n := find(list, named.Inode)
	assert.Equal(t, 1, n)
	assert.Equal(t, Namespace{Inode: named.Inode, Path: named.Path}, got, "found by its name, no process")

	named.Delete(t)
	list, _, err = f.List(list[:0])
	require.NoError(t, err)
	_, n = find(list, named.Inode)
	assert.Zero(t, n, "deleted")
	_, n = find(list, held.Inode)
	assert.Equal(t, 1, n)

	ownOnly, err := New(Options{ProcPath: "/proc", NamedPath: "/run/netns", OwnOnly: true})
	require.NoError(t, err)
	defer ownOnly.Close()
	list, _, err = ownOnly.List(nil)
	require.NoError(t, err)
	assert.Equal(t, []Namespace{{Inode: own, Path: "/proc/thread-self/ns/net", Own: true}}, list)
}

// TestListHostileProc: a proc directory with entries that are not
// processes, links that do not name a network namespace and a process
// whose link is gone; a stale name under the named directory (a plain
// file, not a mounted namespace).
func TestListHostileProc(t *testing.T) {
	root := t.TempDir()
	mk := func(pid, target string) {
		require.NoError(t, os.MkdirAll(root+"/"+pid+"/ns", 0o755))
		if target != "" {
			require.NoError(t, os.Symlink(target, root+"/"+pid+"/ns/net"))
		}
	}
	mk("10", "net:[4026532001]")
	mk("11", "net:[4026532001]") // same namespace: listed once
	mk("12", "net:[4026532002]")
	mk("13", "garbage")
	mk("14", "net:[99999999999999999999]")
	mk("15", "") // exited: no link
	mk("self", "net:[4026532003]")
	mk("-1", "net:[4026532004]")
	named := t.TempDir()
	require.NoError(t, os.WriteFile(named+"/stale", nil, 0o644))

	f, err := New(Options{ProcPath: root, NamedPath: named})
	require.NoError(t, err)
	defer f.Close()
	list, missed, err := f.List(nil)
	require.NoError(t, err)
	assert.Equal(t, Missed{Malformed: 3}, missed, "two bad links, one stale name")
	byInode := map[uint64][]int{}
	for _, ns := range list[1:] {
		byInode[ns.Inode] = append(byInode[ns.Inode], ns.PID)
		assert.Equal(t, fmt.Sprintf("%s/%d/ns/net", root, ns.PID), ns.Path)
	}
	require.Len(t, byInode, 2, "%v", list)
	require.Len(t, byInode[4026532001], 1, "once, through either of its processes")
	assert.Contains(t, []int{10, 11}, byInode[4026532001][0])
	assert.Equal(t, []int{12}, byInode[4026532002])

	_, _, err = (&Finder{opts: Options{ProcPath: root + "/missing"}, own: f.own, seen: map[uint64]struct{}{}}).List(nil)
	assert.ErrorContains(t, err, "listing processes")
}

// unreadable counts the processes whose namespace link readlink is
// refused.
func unreadable(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if _, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); os.IsPermission(err) {
			n++
		}
	}
	return n
}

// threadsNetns lists the network namespaces of the process's threads.
func threadsNetns(t *testing.T) map[uint64]int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	out := map[uint64]int{}
	for _, task := range tasks {
		l, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err != nil {
			continue // exited
		}
		ino, ok := ParseLink([]byte(l))
		require.True(t, ok)
		out[ino]++
	}
	return out
}

func fdCount(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(fds)
}

// TestKernelEach reads inside each namespace (the reading thread's own
// /proc/thread-self link shows where it is), reads without entering when
// told, passes over a namespace deleted between List and Each, leaves
// every thread of the process in its namespace and no fd open.
func TestKernelEach(t *testing.T) {
	a, b, gone := netnstest.Add(t), netnstest.Add(t), netnstest.Add(t)
	f, err := New(Options{ProcPath: "/proc", NamedPath: "/run/netns"})
	require.NoError(t, err)
	defer f.Close()
	own := f.Own().Inode
	list, _, err := f.List(nil)
	require.NoError(t, err)
	gone.Delete(t)
	fds := fdCount(t)

	for round := range 3 {
		inside := map[uint64]uint64{}
		outcomes := map[uint64]Outcome{}
		err = f.Each(context.Background(), list, Visit{
			Enter: func(ns Namespace) bool { return ns.Inode != b.Inode },
			Read: func(ns Namespace) error {
				inside[ns.Inode] = linkInode(t, "/proc/thread-self/ns/net")
				return nil
			},
			Done: func(ns Namespace, o Outcome, err error) {
				outcomes[ns.Inode] = o
				if o == Read {
					assert.NoError(t, err)
				}
			},
		})
		require.NoError(t, err, "round %d", round)
		assert.Equal(t, own, inside[own])
		assert.Equal(t, a.Inode, inside[a.Inode], "entered")
		assert.Equal(t, own, inside[b.Inode], "not entered when Enter says no")
		assert.Equal(t, Vanished, outcomes[gone.Inode], "deleted after List")
		_, readGone := inside[gone.Inode]
		assert.False(t, readGone)
		for _, ns := range list {
			if ns.Inode != gone.Inode {
				assert.Equal(t, Read, outcomes[ns.Inode], "namespace %d", ns.Inode)
			}
		}
		for ino := range threadsNetns(t) {
			assert.Equal(t, own, ino, "every thread back in the agent's namespace")
		}
		assert.Equal(t, fds, fdCount(t), "no fd left open")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = f.Each(ctx, list, Visit{Enter: func(Namespace) bool { return true }, Read: func(Namespace) error { return nil }, Done: func(Namespace, Outcome, error) {}})
	assert.ErrorIs(t, err, context.Canceled)
}

// TestKernelEachDenied runs Each in a child process without CAP_SYS_ADMIN:
// the namespaces it may not enter are Denied, its own is read.
func TestKernelEachDenied(t *testing.T) {
	if os.Getenv("NETNS_DENIED_CHILD") == "1" {
		deniedChild(t)
		return
	}
	a := netnstest.Add(t)
	setpriv := testkit.RequireTool(t, "setpriv")
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(setpriv, "--inh-caps=-all", "--bounding-set=-sys_admin", "--", exe, "-test.run=^TestKernelEachDenied$", "-test.v")
	cmd.Env = append(os.Environ(), "NETNS_DENIED_CHILD=1", "NETNS_DENIED_PATH="+a.Path, fmt.Sprintf("NETNS_DENIED_INODE=%d", a.Inode))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestKernelEachDenied", "%s", out)
}

func deniedChild(t *testing.T) {
	// The bounding set lost CAP_SYS_ADMIN; drop it from the effective set
	// too, as a service without it runs.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	require.NoError(t, unix.Capget(&hdr, &data[0]))
	data[0].Effective &^= 1 << unix.CAP_SYS_ADMIN
	data[0].Permitted &^= 1 << unix.CAP_SYS_ADMIN
	require.NoError(t, unix.Capset(&hdr, &data[0]))

	ino, err := strconv.ParseUint(os.Getenv("NETNS_DENIED_INODE"), 10, 64)
	require.NoError(t, err)
	f, err := New(Options{ProcPath: "/proc"})
	require.NoError(t, err)
	defer f.Close()
	list := []Namespace{f.Own(), {Inode: ino, Path: os.Getenv("NETNS_DENIED_PATH")}}
	outcomes := map[uint64]Outcome{}
	errs := map[uint64]error{}
	read := map[uint64]bool{}
	err = f.Each(context.Background(), list, Visit{
		Enter: func(Namespace) bool { return true },
		Read:  func(ns Namespace) error { read[ns.Inode] = true; return nil },
		Done:  func(ns Namespace, o Outcome, err error) { outcomes[ns.Inode], errs[ns.Inode] = o, err },
	})
	require.NoError(t, err)
	assert.Equal(t, Read, outcomes[f.Own().Inode], "%v", errs[f.Own().Inode])
	assert.Equal(t, Denied, outcomes[ino])
	assert.ErrorIs(t, errs[ino], unix.EPERM)
	assert.False(t, read[ino])
}
