package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// This file holds what the tests of libbeat's outputs share: running the
// agent with an output other than the console, waiting for conditions on a
// server the test started, libbeat's monitoring endpoint, and the
// field-by-field check of a loopback scenario's events.

// outputAgent runs connbeat with output (top-level YAML such as
// "output.kafka:\n  hosts: [...]") instead of the console output.
func outputAgent(t *testing.T, section, output string, extra ...string) *Agent {
	t.Helper()
	return RunAgent(t, AgentOptions{
		Connbeat: section,
		Extra:    "output.console.enabled: false\n" + output + "\n" + strings.Join(extra, "\n"),
	})
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// eventually polls cond every 100 ms until it holds; the deadline is generous
// because the machine is shared with other compiling test runs.
func eventually(t *testing.T, a *Agent, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if a != nil {
			select {
			case <-a.done:
				t.Fatalf("agent exited (%v) while waiting for %s", a.err, what)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// monitoring is the YAML that turns on libbeat's HTTP monitoring endpoint.
func monitoring(port int) string {
	return fmt.Sprintf("http.enabled: true\nhttp.host: 127.0.0.1\nhttp.port: %d\n", port)
}

// agentStats reads libbeat's counters from GET /stats on the monitoring
// port, waiting for the endpoint to come up after the agent's start.
func agentStats(t *testing.T, port int) Event {
	t.Helper()
	var (
		resp *http.Response
		err  error
	)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/stats", port))
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st Event
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

// num returns the number at path, failing the test when there is none.
func (e Event) num(t *testing.T, path string) float64 {
	t.Helper()
	v, ok := e.Get(path).(float64)
	require.True(t, ok, "no number at %s in %v", path, e)
	return v
}

// Matchers for the events of a loopbackScenario (see core_test.go): its
// listener, the first client's outbound connection and its inbound side.
func (s loopbackScenario) isListener(e Event) bool {
	return e.Str("direction") == "listening" && e.Get("local_port") == s.port &&
		e.Get("local_process.pid") == s.listener.PID()
}

func (s loopbackScenario) isOutbound(e Event) bool {
	return e.Str("direction") == "outbound" && e.Get("remote_port") == s.port &&
		e.Get("local_process.pid") == s.client.PID()
}

func (s loopbackScenario) isInbound(e Event) bool {
	return e.Str("direction") == "inbound" && e.Get("local_port") == s.port && e.Str("remote_ip") == s.ip
}

// complete reports whether evs hold all three events of the scenario.
func (s loopbackScenario) complete(evs []Event) bool {
	var ln, out, in bool
	for _, e := range evs {
		ln = ln || s.isListener(e)
		out = out || s.isOutbound(e)
		in = in || s.isInbound(e)
	}
	return ln && out && in
}

// check asserts the scenario's three events field by field, as an output
// delivered them. The values come from the peers the test started, not
// from the agent.
func (s loopbackScenario) check(t *testing.T, evs []Event) {
	t.Helper()
	find := func(what string, match func(Event) bool) Event {
		for _, e := range evs {
			if match(e) {
				return e
			}
		}
		t.Fatalf("no %s event among %d", what, len(evs))
		return nil
	}
	common := func(e Event) {
		assert.Equal(t, "connbeat", e.Str("type"))
		assert.NotEmpty(t, e.Str("beat.hostname"))
		assert.Equal(t, e.Str("beat.hostname"), e.Str("host.name"))
		assert.Equal(t, "connbeat", e.Str("agent.type"))
		ts, err := time.Parse(time.RFC3339Nano, e.Str("@timestamp"))
		if assert.NoError(t, err) {
			assert.WithinDuration(t, time.Now(), ts, 5*time.Minute)
		}
	}

	ln := find("listener", s.isListener)
	common(ln)
	assert.Equal(t, "listener", ln.Str("connbeat.kind"))
	assert.Equal(t, "listen", ln.Str("connbeat.tcp_state"))
	assert.Equal(t, float64(1), ln.Get("connbeat.sockets"))
	assert.Equal(t, s.ip, ln.Str("local_ip"))
	assert.Nil(t, ln.Get("remote_port"))
	assert.Nil(t, ln.Get("remote_ip"))
	assert.Equal(t, "cbpeer", ln.Str("local_process.binary"))
	assert.Equal(t, bins.peer, ln.Str("local_process.exe"))
	assert.Equal(t, bins.peer+" listen "+net.JoinHostPort(s.ip, "0"), ln.Str("local_process.cmdline"))

	out := find("outbound", s.isOutbound)
	common(out)
	assert.Equal(t, "connection", out.Str("connbeat.kind"))
	assert.Equal(t, "established", out.Str("connbeat.tcp_state"))
	assert.Equal(t, float64(3), out.Get("connbeat.sockets"), "three connections, one event")
	assert.Equal(t, s.ip, out.Str("local_ip"))
	assert.Equal(t, s.ip, out.Str("remote_ip"))
	assert.Equal(t, "cbpeer", out.Str("local_process.binary"))
	assert.Equal(t, bins.peer+" connect "+s.listener.Addr+"  3", out.Str("local_process.cmdline"))

	in := find("inbound", s.isInbound)
	common(in)
	assert.Equal(t, "connection", in.Str("connbeat.kind"))
	assert.Equal(t, "inbound", in.Str("connbeat.direction"))
	assert.Equal(t, s.ip, in.Str("local_ip"))
	assert.Equal(t, s.listener.PID(), in.Get("local_process.pid"))
	assert.Equal(t, float64(3), in.Get("connbeat.sockets"), "the first client's three connections")
}

// keepOnly is a libbeat processor that drops every event matching none of
// the conditions (YAML flow maps such as "{equals: {local_ip: 127.0.0.3}}").
// The machine is shared with other test runs that hold tens of thousands of
// sockets; processors run before the queue, so their events take no room in
// it and each test's queue holds only the events it asserts on.
func keepOnly(conds ...string) string {
	y := "processors:\n  - drop_event:\n      when:\n        not:\n          or:\n"
	for _, c := range conds {
		y += "            - " + c + "\n"
	}
	return y
}

// pidIs is a keepOnly condition on the classic format's process id.
func pidIs(pid float64) string {
	return fmt.Sprintf("{equals: {local_process.pid: %d}}", int(pid))
}

// only keeps the events of the scenario's three processes.
func (s loopbackScenario) only() string {
	return keepOnly(pidIs(s.listener.PID()), pidIs(s.client.PID()), pidIs(s.client2.PID()))
}

// ownListeners opens n listeners on ip (any 127.0.0.0/8 address: each test
// takes its own, so its agent can keep only its events) in the test process.
// Each is a new dedup key for the agent.
func ownListeners(t *testing.T, ip string, n int) []net.Listener {
	t.Helper()
	lns := make([]net.Listener, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		lns = append(lns, l)
	}
	return lns
}

// keepOwn keeps the events of the test process's sockets on ip.
func keepOwn(ip string) string {
	return keepOnly(fmt.Sprintf("{and: [%s, {equals: {local_ip: %q}}]}", pidIs(float64(os.Getpid())), ip))
}

func portOf(l net.Listener) float64 { return float64(l.Addr().(*net.TCPAddr).Port) }

// listenerCounts counts the listener events of the test process on ip by
// port.
func listenerCounts(evs []Event, ip string) map[float64]int {
	n := map[float64]int{}
	for _, e := range evs {
		if e.Str("direction") == "listening" && e.Str("local_ip") == ip &&
			e.Get("local_process.pid") == float64(os.Getpid()) {
			if p, ok := e.Get("local_port").(float64); ok {
				n[p]++
			}
		}
	}
	return n
}

// allArrived reports whether every listener in lns has an event in counts.
func allArrived(counts map[float64]int, lns []net.Listener) bool {
	for _, l := range lns {
		if counts[portOf(l)] == 0 {
			return false
		}
	}
	return true
}
