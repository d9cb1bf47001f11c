package tests

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
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

// TestUnprivileged runs the agent as nobody without capabilities: the
// test's sockets are still reported, processes of other users come
// without process fields, its own user's processes with them, and the log
// explains the missing capabilities once instead of failing every poll.
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

// TestProcessChurn keeps short-lived processes that connect to a listener
// and exit coming, from four workers for churnFor, while the agent polls
// every 100 ms (the minimum): it keeps polling during the churn (counted in its log
// while the workers run), logs no error, reports the churn's connections
// on the listener's side, joined to the listener's process, and exits
// cleanly.
func TestProcessChurn(t *testing.T) {
	const churnFor = 5 * time.Second
	ln := StartPeer(t, nil, "listen", "127.0.0.1:0")
	_, port := splitAddr(t, ln.Addr)
	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms\n  aggregation: 1s", Extra: debugPolls})
	waitPolls(t, a, 1)
	inbound := func(e Event) bool {
		return e.Str("direction") == "inbound" && e.Get("local_port") == port && e.Get("local_process.pid") == ln.PID()
	}
	require.Empty(t, a.Matching(inbound), "no connection to the listener before the churn")

	var (
		wg      sync.WaitGroup
		failed  sync.Map
		flashes atomic.Int64
	)
	before := countPolls(a.Stderr())
	end := time.Now().Add(churnFor)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(end); i++ {
				if out, err := exec.Command(bins.peer, "flash", ln.Addr).CombinedOutput(); err != nil {
					failed.Store(w*100000+i, string(out))
				}
				flashes.Add(1)
			}
		}(w)
	}
	wg.Wait()
	during := countPolls(a.Stderr()) - before
	failed.Range(func(k, v any) bool { t.Errorf("peer %v: %v", k, v); return true })
	t.Logf("%d short-lived processes in %s, %d polls meanwhile", flashes.Load(), churnFor, during)
	// Polls of a host whose /proc gains hundreds of processes a second
	// take far longer than 50 ms on a busy machine (5 in 3 s seen); one
	// that stalled on the churn would leave none.
	assert.GreaterOrEqual(t, during, 3, "the agent kept polling through the churn")
	a.WaitFor("the churn's connections, on the listener's side", inbound)

	log := a.Stderr()
	assert.NotContains(t, log, "poll failed")
	assert.NotContains(t, log, "panic")
	assert.Equal(t, 0, strings.Count(log, `"log.level":"error"`))
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// TestShutdownFlushes stops the agent while the events of its polls are
// still in libbeat's queue, held back there (flush.min_events above what
// the test makes, flush.timeout of an hour): none has reached the output
// before SIGTERM, and each listener's event is written, once, before the
// agent exits 0. Only the flush on shutdown can have written them.
func TestShutdownFlushes(t *testing.T) {
	const ip = "127.0.0.31"
	lns := ownListeners(t, ip, 50)
	a := RunAgent(t, AgentOptions{Connbeat: "  poll_interval: 100ms",
		Extra: debugPolls + "queue.mem:\n  events: 4096\n  flush.min_events: 4096\n  flush.timeout: 1h\n" + keepOwn(ip)})
	waitPolls(t, a, 3)
	require.Empty(t, a.Events(), "events reached the output before the stop: the queue did not hold them")
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
	counts := listenerCounts(a.Events(), ip)
	for _, l := range lns {
		assert.Equal(t, 1, counts[portOf(l)], "listener %s reported once, by the flush on shutdown", l.Addr())
	}
}
