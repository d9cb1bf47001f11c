// Package netnstest makes real network namespaces for tests: named ones
// (`ip netns add`, deleted at the test's end), code run inside them from
// the test's own process, processes started in them and veth pairs
// between them.
package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit"
)

// NS is a named network namespace a test made.
type NS struct {
	// Name is its name for `ip netns` (unique per test run).
	Name string
	// Path is its file under /run/netns.
	Path string
	// Inode is the namespace's inode, the value sockets carry in NetNS.
	Inode uint64
}

// Require skips t unless it runs as root with `ip` at hand (a failure
// instead under testkit.Strict when ip is missing).
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating and entering network namespaces needs root (CAP_SYS_ADMIN)")
	}
	testkit.RequireTool(t, "ip")
}

// Add creates a named namespace with lo up, deleted when t ends.
func Add(t testing.TB) *NS {
	t.Helper()
	Require(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("cbt-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, Path: "/run/netns/" + name}
	t.Cleanup(func() { ns.Delete(t) })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	var st unix.Stat_t
	if err := unix.Stat(ns.Path, &st); err != nil {
		t.Fatalf("stat %s: %v", ns.Path, err)
	}
	ns.Inode = st.Ino
	return ns
}

// Delete deletes the namespace's name (the namespace itself ends when
// nothing holds it any more); deleting it again does nothing.
func (ns *NS) Delete(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(ns.Path); err != nil {
		return
	}
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
	}
}

// Do runs fn on an OS thread of the test process moved into the
// namespace: sockets fn opens are the namespace's and the test process's.
// The thread goes back to its namespace afterwards, or, if it cannot,
// ends with its goroutine.
func (ns *NS) Do(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		// Every fd is closed before the result is sent: callers count fds.
		fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			unix.Close(back)
			runtime.UnlockOSThread()
			done <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			unix.Close(back)
			runtime.UnlockOSThread()
			done <- fmt.Errorf("setns into %s: %w", ns.Name, err)
			return
		}
		err = fn()
		returned := unix.Setns(back, unix.CLONE_NEWNET) == nil
		unix.Close(back)
		if returned {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// IP runs `ip -n NAME args...`, failing t on error.
func (ns *NS) IP(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
}

// Command returns a command that runs name with args inside the namespace
// (through `ip netns exec`), ended with ctx.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Veth links a and b with a veth pair, addrA/addrB (CIDR, e.g.
// "10.77.0.1/24") on each end, both up. The pair goes with its
// namespaces.
func Veth(t testing.TB, a, b *NS, addrA, addrB string) {
	t.Helper()
	var r [3]byte
	_, _ = rand.Read(r[:])
	ea, eb := "va"+hex.EncodeToString(r[:]), "vb"+hex.EncodeToString(r[:])
	out, err := exec.Command("ip", "link", "add", ea, "netns", a.Name, "type", "veth", "peer", "name", eb, "netns", b.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link add veth: %v: %s", err, out)
	}
	a.IP(t, "addr", "add", addrA, "dev", ea)
	b.IP(t, "addr", "add", addrB, "dev", eb)
	a.IP(t, "link", "set", ea, "up")
	b.IP(t, "link", "set", eb, "up")
}
