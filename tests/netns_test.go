package tests

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/connbeat/connbeat/internal/testkit"
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

// TestNetworkNamespace runs the agent inside a namespace the test creates:
// it reports the listener and connection made in that namespace, joined to
// their processes, and none of the host namespace's sockets.
func TestNetworkNamespace(t *testing.T) {
	prefix := netns(t)
	host := StartPeer(t, nil, "listen", "127.0.0.1:0")
	_, hostPort := splitAddr(t, host.Addr)

	inNS := func(args ...string) []string { return append(append([]string{}, prefix...), args...) }
	ln := startCmdPeer(t, inNS(bins.peer, "listen", "127.0.0.1:0"))
	_, port := splitAddr(t, ln.Addr)
	client := startCmdPeer(t, inNS(bins.peer, "connect", ln.Addr))

	dir := writeConfig(t, AgentOptions{Connbeat: "  poll_interval: 100ms", Extra: debugPolls})
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
