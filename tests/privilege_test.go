package tests

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var nobody = &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}

// debugPolls is the Extra config that logs one debug line per poll, so a
// test can tell how many polls ran without timing them.
const debugPolls = "logging.level: debug\nlogging.selectors: [connbeat]\n"

func countPolls(log string) int { return strings.Count(log, `"message":"poll: `) }

// waitPolls waits until the agent has logged n polls.
func waitPolls(t *testing.T, a *Agent, n int) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for countPolls(a.Stderr()) < n {
		require.True(t, time.Now().Before(deadline), "fewer than %d polls in 45 s", n)
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUnprivileged runs the agent as nobody without capabilities: every
// socket is still reported, processes of other users come without process
// fields, its own user's processes with them, and the log explains the
// missing capabilities once instead of failing every poll.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the agent and a peer as another user (nobody)")
	}
	ln := StartPeer(t, nil, "listen", "127.0.0.1:0")
	_, port := splitAddr(t, ln.Addr)
	theirs := StartPeer(t, nobody, "connect", ln.Addr)

	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms", Extra: debugPolls, Credential: nobody})

	lnEv := a.WaitFor("root's listener", func(e Event) bool {
		return e.Str("direction") == "listening" && e.Get("local_port") == port
	})
	assert.Nil(t, lnEv.Get("local_process"), "root's process is not readable by nobody")
	assert.Equal(t, "127.0.0.1", lnEv.Str("local_ip"))

	in := a.WaitFor("inbound to root's listener", func(e Event) bool {
		return e.Str("direction") == "inbound" && e.Get("local_port") == port
	})
	assert.Nil(t, in.Get("local_process"))

	out := a.WaitFor("outbound of nobody's client", func(e Event) bool {
		return e.Str("direction") == "outbound" && e.Get("remote_port") == port
	})
	if !assert.Equal(t, theirs.PID(), out.Get("local_process.pid"), "the agent's own user's processes are joined") {
		for _, e := range a.Events() {
			if e.Get("remote_port") == port || e.Get("local_port") == port {
				t.Logf("event for the port: %s %s pid=%v sockets=%v ts=%s", e.Str("direction"), e.Str("local_ip"), e.Get("local_process.pid"), e.Get("connbeat.sockets"), e.Str("@timestamp"))
			}
		}
		t.Logf("agent log: %s", a.Stderr())
	}
	assert.Equal(t, "cbpeer", out.Str("local_process.binary"))
	assert.Equal(t, "nobody", out.Str("local_process.user"))

	waitPolls(t, a, 10)
	log := a.Stderr()
	assert.Equal(t, 1, strings.Count(log, "running as uid 65534 without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"), "one explanation")
	assert.Equal(t, 0, strings.Count(log, `"log.level":"error"`), "no error per poll")
	assert.NotContains(t, log, "poll failed")
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// TestProcessChurn keeps hundreds of short-lived processes that connect and
// exit coming while the agent polls every 100 ms (the minimum): nothing fails, nothing
// crashes, and the agent still exits cleanly.
func TestProcessChurn(t *testing.T) {
	ln := StartPeer(t, nil, "listen", "127.0.0.1:0")
	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms\n  aggregation: 1s", Extra: debugPolls})
	waitPolls(t, a, 1)

	var wg sync.WaitGroup
	var failed sync.Map
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if out, err := exec.Command(bins.peer, "flash", ln.Addr).CombinedOutput(); err != nil {
					failed.Store(w*1000+i, string(out))
				}
			}
		}(w)
	}
	before := countPolls(a.Stderr())
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("peer %v: %v", k, v); return true })
	waitPolls(t, a, before+5)

	log := a.Stderr()
	assert.Greater(t, countPolls(log)-before, 5, "the agent kept polling through the churn")
	assert.NotContains(t, log, "poll failed")
	assert.NotContains(t, log, "panic")
	assert.Equal(t, 0, strings.Count(log, `"log.level":"error"`))
	assert.NotEmpty(t, a.Matching(func(e Event) bool { return e.Str("direction") == "inbound" }),
		"connections of the short-lived peers were seen")
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// TestShutdownFlushes stops the agent right after it found new sockets: the
// events already queued are written before it exits 0.
func TestShutdownFlushes(t *testing.T) {
	var lns []net.Listener
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		lns = append(lns, l)
	}
	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms", Extra: debugPolls})
	waitPolls(t, a, 1)
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
	for _, l := range lns {
		_, port := splitAddr(t, l.Addr().String())
		assert.Len(t, a.Matching(func(e Event) bool {
			return e.Str("direction") == "listening" && e.Get("local_port") == port && e.Get("local_process.pid") == float64(os.Getpid())
		}), 1, "listener %s reported before exit", l.Addr())
	}
}
