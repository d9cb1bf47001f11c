package tests

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit"
)

// needTool returns the path of a program a test runs, or skips the test
// naming the Debian package. In strict mode (CI=true or
// CONNBEAT_REQUIRE_TOOLS=1, where .ci/run installs the package), a missing
// program fails the test instead.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	testkit.Missing(t, "%s not found (Debian package %s): %v", name, pkg, err)
	return ""
}

// needRoot skips a test that needs root, saying what for.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", why)
	}
}

// uniqueName is a name for the test's own kernel objects (namespace, nft
// table, image) that no other test, and no other run, uses.
func uniqueName(t *testing.T, prefix string) string {
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	return fmt.Sprintf("%s_%d_%x", prefix, os.Getpid(), h.Sum32())
}

// ctNetns is a network namespace of the test's own where conntrack tracks
// loopback traffic: an nft table with a rule that uses ct, and short
// timeouts so that closed flows are destroyed within seconds. Its conntrack
// table, events and sysctls are the test's alone.
type ctNetns struct {
	name  string
	table string
}

func newCTNetns(t *testing.T) *ctNetns {
	t.Helper()
	needRoot(t, "a network namespace, nft rules and conntrack events")
	needTool(t, "ip", "iproute2")
	needTool(t, "nft", "nftables")
	n := &ctNetns{name: uniqueName(t, "cbct"), table: uniqueName(t, "connbeat_test")}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.name).Run() })
	n.run(t, "ip", "link", "set", "lo", "up")
	n.nft(t, fmt.Sprintf("table inet %s {\n chain out {\n  type filter hook output priority 0;\n  ct state new counter\n }\n}\n", n.table))
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "exec", n.name, "nft", "delete", "table", "inet", n.table).Run()
	})
	// Per namespace: restored for form's sake, gone with it anyway.
	for key, value := range map[string]string{
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait":  "1",
		"net.netfilter.nf_conntrack_tcp_timeout_close":      "1",
		"net.netfilter.nf_conntrack_tcp_timeout_fin_wait":   "1",
		"net.netfilter.nf_conntrack_tcp_timeout_last_ack":   "1",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait": "1",
		"net.netfilter.nf_conntrack_udp_timeout":            "2",
		"net.netfilter.nf_conntrack_udp_timeout_stream":     "2",
	} {
		n.setSysctl(t, key, value)
	}
	return n
}

// cmd returns argv run inside the namespace.
func (n *ctNetns) cmd(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

func (n *ctNetns) run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, argv...)...).CombinedOutput()
	require.NoError(t, err, "%v: %s", argv, out)
	return string(out)
}

// nft loads a ruleset into the namespace.
func (n *ctNetns) nft(t *testing.T, rules string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "nft -f:\n%s\n%s", rules, out)
}

func (n *ctNetns) sysctl(t *testing.T, key string) string {
	t.Helper()
	return strings.TrimSpace(n.run(t, "sysctl", "-n", key))
}

// setSysctl sets key in the namespace and restores it when the test ends.
func (n *ctNetns) setSysctl(t *testing.T, key, value string) {
	t.Helper()
	n.restoreSysctl(t, key)
	n.run(t, "sysctl", "-q", "-w", key+"="+value)
}

// restoreSysctl puts key back to its present value when the test ends.
func (n *ctNetns) restoreSysctl(t *testing.T, key string) {
	t.Helper()
	old := n.sysctl(t, key)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "exec", n.name, "sysctl", "-q", "-w", key+"="+old).Run() })
}

// exchangePeer is a `cbpeer exchange` client: it has sent and received
// its bytes and holds its socket until Close, which ends the process.
type exchangePeer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	Local string // its address, as it printed it
	done  chan error
}

func startExchange(t *testing.T, argv ...string) *exchangePeer {
	t.Helper()
	p := &exchangePeer{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan error, 1)}
	var err error
	p.stdin, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	out, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	p.cmd.Stderr = &stderr
	require.NoError(t, p.cmd.Start())
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "cbpeer %v: %s", argv, stderr.String())
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	require.True(t, ok, "cbpeer said %q (%s)", line, stderr.String())
	p.Local = addr
	return p
}

// PID is the peer's pid as events carry it (JSON numbers are float64).
func (p *exchangePeer) PID() float64 { return float64(p.cmd.Process.Pid) }

// Close ends the exchange: the peer closes its socket and exits.
func (p *exchangePeer) Close(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	select {
	case err := <-p.done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("cbpeer exchange did not exit within 10 s of its stdin closing")
	}
}

// waitLog waits until the agent's log has a line containing s.
func waitLog(t *testing.T, a *Agent, s string) {
	t.Helper()
	eventually(t, a, 30*time.Second, "log line "+s, func() bool { return strings.Contains(a.Stderr(), s) })
}

// waitDestroy waits for a DESTROY event. The kernel destroys an entry
// whose timeout passed when its garbage collector gets to it, up to a
// minute later on a busy host, or at once when the table is dumped: the
// test dumps it (`conntrack -L`) every second meanwhile.
func (n *ctNetns) waitDestroy(t *testing.T, a *Agent, what string, match func(Event) bool) Event {
	t.Helper()
	needTool(t, "conntrack", "conntrack")
	var got []Event
	eventually(t, a, 45*time.Second, what, func() bool {
		if got = a.Matching(match); len(got) > 0 {
			return true
		}
		_ = exec.Command("ip", "netns", "exec", n.name, "conntrack", "-L").Run()
		time.Sleep(900 * time.Millisecond)
		return false
	})
	return got[0]
}
