package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit"
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

// freePort returns a TCP port that was free a moment ago, outside the
// ephemeral range the tests' own connections take theirs from.
func freePort(t *testing.T) int {
	t.Helper()
	ports, err := testkit.FreePorts(1)
	require.NoError(t, err)
	return ports[0]
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

// sofar returns the number at path, 0 while there is none: libbeat
// registers its output's and pipeline's counters only once the agent has
// set them up, which /stats can answer before.
func (e Event) sofar(path string) float64 {
	v, _ := e.Get(path).(float64)
	return v
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
// delivered them: each field the event carries is either the value the
// test knows from the peers it started, or, where it changes from run to
// run (ids, times, ephemeral ports, the host's addresses), of the form it
// must have. A field missing, or one the test does not know, fails.
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
	ln := find("listener", s.isListener)
	checkFields(t, "listener", ln, s.fields(t, ln, map[string]any{
		"direction": "listening", "connbeat.direction": "listening", "connbeat.kind": "listener",
		"connbeat.tcp_state": "listen", "connbeat.sockets": float64(1),
		"local_port":            s.port,
		"local_process.pid":     s.listener.PID(),
		"local_process.cmdline": bins.peer + " listen " + net.JoinHostPort(s.ip, "0"),
	}))

	out := find("outbound", s.isOutbound)
	checkFields(t, "outbound", out, s.fields(t, out, map[string]any{
		"direction": "outbound", "connbeat.direction": "outbound", "connbeat.kind": "connection",
		"connbeat.tcp_state": "established", "connbeat.sockets": float64(3), // three connections, one event
		"local_port":            ephemeral(s.port),
		"remote_ip":             s.ip,
		"remote_port":           s.port,
		"local_process.pid":     s.client.PID(),
		"local_process.cmdline": bins.peer + " connect " + s.listener.Addr + "  3",
		// The listener, on this host too, is the peer.
		"remote_process.pid":    s.listener.PID(),
		"remote_process.name":   "cbpeer",
		"remote_process.binary": "cbpeer",
		"remote_process.exe":    bins.peer,
	}))

	in := find("inbound", s.isInbound)
	checkFields(t, "inbound", in, s.fields(t, in, map[string]any{
		"direction": "inbound", "connbeat.direction": "inbound", "connbeat.kind": "connection",
		"connbeat.tcp_state": "established", "connbeat.sockets": float64(3), // the first client's three connections
		"local_port":            s.port,
		"remote_ip":             s.ip,
		"remote_port":           ephemeral(s.port),
		"local_process.pid":     s.listener.PID(),
		"local_process.cmdline": bins.peer + " listen " + net.JoinHostPort(s.ip, "0"),
		"remote_process.pid":    s.client.PID(),
		"remote_process.name":   "cbpeer",
		"remote_process.binary": "cbpeer",
		"remote_process.exe":    bins.peer,
	}))
}

// fieldCheck says whether a value has the form a field must have.
type fieldCheck func(v any) bool

// ephemeral is a port the kernel picked for a client: any but the
// listener's.
func ephemeral(listener float64) fieldCheck {
	return func(v any) bool {
		p, ok := v.(float64)
		return ok && p > 0 && p <= 65535 && p != listener
	}
}

// fields returns what every field of a scenario event e must be: the
// values every event of the agent shares (the same for the three, taken
// from e where they are the agent's choice, such as its ids), the
// peers' process fields, and own, the event's own fields.
func (s loopbackScenario) fields(t *testing.T, e Event, own map[string]any) map[string]any {
	t.Helper()
	v, err := os.ReadFile("../VERSION")
	require.NoError(t, err)
	version := strings.TrimSpace(string(v))
	hostname, err := os.Hostname()
	require.NoError(t, err)
	me, err := user.Current()
	require.NoError(t, err)
	nonEmpty := fieldCheck(func(v any) bool { s, ok := v.(string); return ok && s != "" })
	recent := fieldCheck(func(v any) bool {
		ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v))
		return err == nil && time.Since(ts) < 10*time.Minute && time.Until(ts) < time.Minute
	})
	hostIPs := fieldCheck(func(v any) bool {
		ips, ok := v.([]any)
		for _, ip := range ips {
			a, err := netip.ParseAddr(fmt.Sprint(ip))
			ok = ok && err == nil && !a.IsLoopback()
		}
		return ok
	})
	want := map[string]any{
		"@timestamp":               recent,
		"type":                     "connbeat",
		"agent.type":               "connbeat",
		"agent.version":            version,
		"agent.name":               hostname,
		"agent.id":                 nonEmpty,
		"agent.ephemeral_id":       nonEmpty,
		"ecs.version":              nonEmpty,
		"host.name":                hostname,
		"beat.hostname":            hostname,
		"beat.name":                hostname,
		"beat.local_ips":           hostIPs,
		"local_ip":                 s.ip,
		"local_process.binary":     "cbpeer",
		"local_process.name":       "cbpeer",
		"local_process.exe":        bins.peer,
		"local_process.ppid":       float64(os.Getpid()),
		"local_process.uid":        float64(os.Geteuid()),
		"local_process.user":       me.Username,
		"local_process.start_time": recent,
		"connbeat.netns":           float64(hostNetns(t)),
		"@metadata.beat":           "connbeat",
		"@metadata.type":           "_doc",
		"@metadata.version":        version,
	}
	if e.Get("@metadata") == nil {
		// Elasticsearch does not keep @metadata.
		for k := range want {
			if strings.HasPrefix(k, "@metadata.") {
				delete(want, k)
			}
		}
	}
	for k, v := range own {
		want[k] = v
	}
	return want
}

// checkFields compares each field of e, flattened to dotted paths, with
// want: a value it must equal, or a fieldCheck its value must pass. Fields
// of e that want does not name, and fields want names that e lacks, fail.
func checkFields(t *testing.T, what string, e Event, want map[string]any) {
	t.Helper()
	got := map[string]any{}
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(prefix+k+".", sub)
				continue
			}
			got[prefix+k] = v
		}
	}
	flatten("", e)
	for path, v := range got {
		w, known := want[path]
		switch check, isCheck := w.(fieldCheck); {
		case !known:
			t.Errorf("%s event: field %s = %v, which the test does not know", what, path, v)
		case isCheck:
			assert.True(t, check(v), "%s event: %s = %v", what, path, v)
		default:
			assert.Equal(t, w, v, "%s event: %s", what, path)
		}
	}
	for path := range want {
		if _, ok := got[path]; !ok {
			t.Errorf("%s event: no field %s", what, path)
		}
	}
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
