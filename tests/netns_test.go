package tests

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/connbeat/connbeat/internal/testkit/netnstest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// netns creates a network namespace with its loopback up and returns the
// command prefix that runs a program inside it.
func netns(t *testing.T) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	testkit.RequireTool(t, "ip")
	name := fmt.Sprintf("connbeat-test-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return []string{"ip", "netns", "exec", name}
}

// TestNetworkNamespace runs the agent inside a namespace the test creates,
// with network_namespaces: own: it reports the listener and connection
// made in that namespace, joined to their processes, and none of the host
// namespace's sockets. (With the default, all, it would find the host's
// namespace through /proc and read it too: TestEveryNetworkNamespace.)
func TestNetworkNamespace(t *testing.T) {
	prefix := netns(t)
	host := StartPeer(t, nil, "listen", "127.0.0.1:0")
	_, hostPort := splitAddr(t, host.Addr)

	inNS := func(args ...string) []string { return append(append([]string{}, prefix...), args...) }
	ln := startCmdPeer(t, inNS(bins.peer, "listen", "127.0.0.1:0"))
	_, port := splitAddr(t, ln.Addr)
	client := startCmdPeer(t, inNS(bins.peer, "connect", ln.Addr))

	dir := writeConfig(t, AgentOptions{Connbeat: "  poll_interval: 100ms\n  network_namespaces: own", Extra: debugPolls})
	a := runAgentCmd(t, dir, inNS(bins.connbeat, "-e", "-c", dir+"/connbeat.yml", "--strict.perms=false"))

	lnEv := a.WaitFor("listener in the namespace", func(e Event) bool {
		return e.Str("direction") == "listening" && e.Get("local_port") == port
	})
	assert.Equal(t, ln.PID(), lnEv.Get("local_process.pid"))
	out := a.WaitFor("outbound in the namespace", func(e Event) bool {
		return e.Str("direction") == "outbound" && e.Get("remote_port") == port
	})
	assert.Equal(t, client.PID(), out.Get("local_process.pid"))

	waitPolls(t, a, 5)
	assert.Empty(t, a.Matching(func(e Event) bool { return e.Get("local_port") == hostPort || e.Get("remote_port") == hostPort }),
		"the host namespace's listener is not visible from inside")
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// inNamespace returns the command line that runs cbpeer with args inside ns.
func inNamespace(ns *netnstest.NS, args ...string) []string {
	return append([]string{"ip", "netns", "exec", ns.Name, bins.peer}, args...)
}

// agentFDs counts the agent's open fds.
func agentFDs(t *testing.T, a *Agent) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", a.cmd.Process.Pid))
	require.NoError(t, err)
	return len(fds)
}

// TestEveryNetworkNamespace runs the agent in the host's namespace with
// the default network_namespaces: all, and processes in two namespaces of
// the test's, linked by a veth pair: the listener in A, its inbound
// connection from B and B's outbound end are each reported in their own
// namespace (connbeat.netns) with their own process; the same address and
// port listening in A and in B are two listener events. Then a third
// namespace comes while the agent runs, its listener is reported, and once
// deleted the agent holds no more fds than before it came, and the
// monitoring counters saw the namespaces.
func TestEveryNetworkNamespace(t *testing.T) {
	a, b := netnstest.Add(t), netnstest.Add(t)
	var r [1]byte
	_, _ = rand.Read(r[:])
	aIP, bIP := fmt.Sprintf("10.78.%d.1", r[0]), fmt.Sprintf("10.78.%d.2", r[0])
	netnstest.Veth(t, a, b, aIP+"/24", bIP+"/24")

	ln := startCmdPeer(t, inNamespace(a, "listen", aIP+":0"))
	_, port := splitAddr(t, ln.Addr)
	client := startCmdPeer(t, inNamespace(b, "connect", ln.Addr))
	lnA := startCmdPeer(t, inNamespace(a, "listen", "127.0.0.1:0"))
	_, shared := splitAddr(t, lnA.Addr)
	lnB := startCmdPeer(t, inNamespace(b, "listen", lnA.Addr))

	mon := freePort(t)
	ag := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms", Extra: debugPolls + monitoring(mon)})
	nsA, nsB := float64(a.Inode), float64(b.Inode)

	// Other suites on the host make namespaces too, where the first
	// ports handed out can be the same: match the namespace as well.
	lnEv := ag.WaitFor("A's listener", func(e Event) bool {
		return e.Str("direction") == "listening" && e.Get("local_port") == port && e.Get("connbeat.netns") == nsA
	})
	assert.Equal(t, ln.PID(), lnEv.Get("local_process.pid"))
	assert.Equal(t, nsA, lnEv.Get("connbeat.netns"))
	in := ag.WaitFor("A's inbound from B", func(e Event) bool {
		return e.Str("direction") == "inbound" && e.Get("local_port") == port && e.Str("local_ip") == aIP
	})
	assert.Equal(t, bIP, in.Str("remote_ip"))
	assert.Equal(t, ln.PID(), in.Get("local_process.pid"), "the accepting end in A, joined to the listener's process")
	assert.Equal(t, nsA, in.Get("connbeat.netns"))
	out := ag.WaitFor("B's outbound to A", func(e Event) bool {
		return e.Str("direction") == "outbound" && e.Get("remote_port") == port && e.Str("remote_ip") == aIP
	})
	assert.Equal(t, bIP, out.Str("local_ip"))
	assert.Equal(t, client.PID(), out.Get("local_process.pid"))
	assert.Equal(t, nsB, out.Get("connbeat.netns"))

	listeners := ag.WaitForN("127.0.0.1 listeners in A and B", 2, func(e Event) bool {
		ns := e.Get("connbeat.netns")
		return e.Str("direction") == "listening" && e.Get("local_port") == shared && (ns == nsA || ns == nsB)
	})
	got := map[float64]float64{}
	for _, e := range listeners {
		pid, _ := e.Get("local_process.pid").(float64)
		got[e.Get("connbeat.netns").(float64)] = pid
	}
	assert.Equal(t, map[float64]float64{nsA: lnA.PID(), nsB: lnB.PID()}, got, "one listener a namespace, each with its process")
	for _, e := range ag.Events() {
		assert.NotNil(t, e.Get("connbeat.netns"), "every event carries its namespace: %v", e)
	}

	// A namespace made while the agent runs, and deleted.
	waitPolls(t, ag, 3)
	// The agent (netlink) keeps a socket for each other namespace it
	// reads, and other suites on the host make and delete namespaces.
	kept := func() int {
		n, _ := agentStats(t, mon).Get("connbeat.socket_source.netns.namespaces").(float64)
		return int(n)
	}
	// kept() first: its HTTP connection, kept alive, is then counted in
	// both figures.
	k := kept()
	before := agentFDs(t, ag) - k
	c := netnstest.Add(t)
	// A peer of its own, not the harness's: it ends before the test does.
	lnC := c.Command(context.Background(), bins.peer, "listen", "127.0.0.1:0")
	stdout, err := lnC.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, lnC.Start())
	t.Cleanup(func() { _ = lnC.Process.Kill(); _ = lnC.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	_, portC := splitAddr(t, strings.TrimPrefix(strings.TrimSpace(line), "ready "))
	cEv := ag.WaitFor("C's listener", func(e Event) bool {
		return e.Str("direction") == "listening" && e.Get("local_port") == portC && e.Get("connbeat.netns") == float64(c.Inode)
	})
	assert.Equal(t, float64(lnC.Process.Pid), cEv.Get("local_process.pid"))
	require.NoError(t, lnC.Process.Kill())
	_ = lnC.Wait()
	c.Delete(t)
	var after int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		k := kept()
		after = agentFDs(t, ag) - k
		if after <= before || time.Now().After(deadline) {
			break
		}
	}
	require.LessOrEqual(t, after, before, "the agent releases the deleted namespace: fds net of kept sockets before it came and now")

	stats := agentStats(t, mon)
	ns, ok := stats.Get("connbeat.socket_source.netns.namespaces").(float64)
	require.True(t, ok, "%v", stats.Get("connbeat.socket_source"))
	assert.GreaterOrEqual(t, ns, 3.0, "the host's, A and B")
	assert.Equal(t, 0.0, stats.Get("connbeat.socket_source.netns.denied"))
	assert.NotContains(t, ag.Stderr(), "may not be entered")
	assert.Equal(t, 0, ag.Stop(syscall.SIGTERM))
}

// TestNetworkNamespacesUnprivileged runs the agent as nobody without
// capabilities, with a listener in a namespace of the test's: it reports
// its own namespace's sockets, none of the other's (it may not enter it),
// says so once in one line, and counts it in socket_source.netns.denied.
func TestNetworkNamespacesUnprivileged(t *testing.T) {
	a := netnstest.Add(t)
	ln := startCmdPeer(t, inNamespace(a, "listen", "127.0.0.1:0"))
	_, port := splitAddr(t, ln.Addr)
	// The same process runs in the agent's namespace as nobody: its
	// namespace link is readable, so the namespace is found and refused.
	hostLn := StartPeer(t, nobody, "listen", "127.0.0.1:0")
	_, hostPort := splitAddr(t, hostLn.Addr)
	inA := startCmdPeer(t, []string{"ip", "netns", "exec", a.Name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bins.peer, "listen", "127.0.0.2:0"})

	mon := freePort(t)
	ag := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms", Extra: debugPolls + monitoring(mon), Credential: nobody})
	ag.WaitFor("the agent's namespace's listener", func(e Event) bool {
		return e.Str("direction") == "listening" && e.Get("local_port") == hostPort
	})
	waitPolls(t, ag, 10)
	inNS := func(p float64) func(Event) bool {
		return func(e Event) bool { return e.Get("local_port") == p && e.Get("connbeat.netns") == float64(a.Inode) }
	}
	assert.Empty(t, ag.Matching(inNS(port)), "A's listener needs setns")
	_, inAPort := splitAddr(t, inA.Addr)
	assert.Empty(t, ag.Matching(inNS(inAPort)))
	log := ag.Stderr()
	assert.Equal(t, 1, strings.Count(log, "network namespaces: "), "said once: %s", log)
	assert.Contains(t, log, "may not be entered (setns needs CAP_SYS_ADMIN")
	assert.NotContains(t, log, "poll failed")
	stats := agentStats(t, mon)
	denied, _ := stats.Get("connbeat.socket_source.netns.denied").(float64)
	assert.GreaterOrEqual(t, denied, 1.0, "%v", stats.Get("connbeat.socket_source"))
	assert.Equal(t, 0, ag.Stop(syscall.SIGTERM))
}

// hostNetns is the inode of the test process's network namespace, the
// one the agent it starts runs in.
func hostNetns(t *testing.T) uint64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat("/proc/self/ns/net", &st))
	return st.Ino
}
