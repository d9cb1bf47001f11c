package packaging

import (
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
)

// agentConfig is the console config the installed connbeat runs with: loopback
// connections included, short poll and flush intervals, flow events on
// (sent where the capture runs).
const agentConfig = `connbeat:
  flow_events: true
  poll_interval: 200ms
  aggregation: 10m
  event_format: classic
  enable_local_connections: true
output.console:
  codec.json:
    pretty: false
queue.mem:
  flush.timeout: 100ms
`

// testCapabilities runs the installed /usr/bin/connbeat as the connbeat user
// (setpriv: the unit's User=, AmbientCapabilities=, CapabilityBoundingSet=,
// NoNewPrivileges= and the CONNBEAT_OPTS its ExecStart passes on) while a
// process of another user (nobody) holds a loopback connection, and checks
// whose sockets it can join to a process and how it sees connections: with
// the unit's capabilities it captures events (a connection of nobody's
// that lasts milliseconds arrives as a flow, attributed to its process);
// with the shipped poll-only drop-in it polls, still joining everyone's
// sockets; with either join capability alone, or none, nobody's
// connection is reported without process fields.
func testCapabilities(t *testing.T) {
	unit := parseUnit(t, unitPath)
	require.Equal(t, []string{"connbeat"}, unit["User"])
	require.Equal(t, []string{"yes"}, unit["NoNewPrivileges"])
	pollOnly := unit.with(parseUnit(t, dropInPath))
	cfg := writeAgentConfig(t, agentConfig)
	// auto stays on netlink on a host this small: force the bpf source
	// to check that the unit's capabilities are enough for it.
	cfgBPF := writeAgentConfig(t, strings.Replace(agentConfig, "connbeat:\n", "connbeat:\n  socket_source: bpf\n", 1))
	python, err := filepath.EvalSymlinks("/usr/bin/python3")
	require.NoError(t, err)

	tests := []struct {
		name      string
		unit      unitFile // the capabilities and CONNBEAT_OPTS to run with
		seesOwner bool
		source    string // the socket source the agent reads through
		capture   string // the capture mode the start line names
	}{
		{"the unit's capabilities", unit, true, "netlink", config.CaptureEvents},
		{"the unit with the poll-only drop-in", pollOnly, true, "netlink", config.CapturePoll},
		{"the unit's capabilities, bpf source", unit, true, "bpf", config.CaptureEvents},
		{"CAP_SYS_PTRACE alone", capsOnly("CAP_SYS_PTRACE"), false, "netlink", config.CapturePoll},
		{"CAP_DAC_READ_SEARCH alone", capsOnly("CAP_DAC_READ_SEARCH"), false, "netlink", config.CapturePoll},
		{"no capabilities", capsOnly(), false, "netlink", config.CapturePoll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.source == "bpf" || tt.capture == config.CaptureEvents {
				// As root first, so that a failure with the
				// capabilities means they fall short.
				src, err := bpfiter.Open()
				kerneltest.RequireBPF(t, err)
				require.NoError(t, src.Close())
			}
			oldLogs, _ := filepath.Glob("/var/log/connbeat/connbeat*.ndjson")
			for _, f := range oldLogs {
				require.NoError(t, os.Remove(f))
			}
			port := listen(t)
			pid := connectAs(t, "nobody", port)

			conf := cfg
			if tt.source == "bpf" {
				conf = cfgBPF
			}
			a := startAgent(t, "/", asService(tt.unit, "/usr/bin/connbeat", "-c", conf)...)
			a.logDir = "/var/log/connbeat"

			ev := a.waitFor(t, fmt.Sprintf("nobody's connection to port %d", port), func(ev map[string]any) bool {
				return field(ev, "direction") == "outbound" && number(ev, "remote_port") == port
			})
			if !tt.seesOwner {
				assert.Nil(t, field(ev, "local_process"), "without both capabilities another user's process is unreadable")
				return
			}
			assert.Equal(t, pid, number(ev, "local_process.pid"))
			assert.Equal(t, filepath.Base(python), field(ev, "local_process.binary"))
			assert.Equal(t, python, field(ev, "local_process.exe"))
			assert.Equal(t, "nobody", field(ev, "local_process.user"))

			// root's listener (this test) is as visible as nobody's socket.
			ev = a.waitFor(t, fmt.Sprintf("the test's listener on port %d", port), func(ev map[string]any) bool {
				return field(ev, "direction") == "listening" && number(ev, "local_port") == port
			})
			assert.Equal(t, os.Getpid(), number(ev, "local_process.pid"))

			if tt.capture == config.CaptureEvents {
				// Opened and closed within milliseconds by a process
				// that exits at once: only the capture sees it, and
				// attributes it to that process.
				short, sent := connectOnceAs(t, "nobody", port)
				ev = a.waitFor(t, fmt.Sprintf("the flow of nobody's short connection (pid %d) to port %d", short, port), func(ev map[string]any) bool {
					return field(ev, "connbeat.kind") == "flow" && number(ev, "remote_port") == port &&
						number(ev, "local_process.pid") == short
				})
				assert.Equal(t, "outbound", field(ev, "connbeat.direction"))
				assert.Equal(t, sent, number(ev, "connbeat.flow.bytes_sent"))
				// The process has exited: the kernel's attribution (its
				// uid) is what is left of it.
				nobody, err := user.Lookup("nobody")
				require.NoError(t, err)
				assert.Equal(t, nobody.Uid, strconv.Itoa(number(ev, "local_process.uid")))
			}
			a.stop(t)
			logs := a.stderrText()
			assert.Contains(t, logs, "connbeat started: source="+tt.source+" ")
			assert.Contains(t, logs, " capture="+tt.capture+" ")

			// The service user wrote its data and logs, and nothing in them
			// belongs to anyone else.
			for _, pattern := range []string{"/var/lib/connbeat/meta.json", "/var/log/connbeat/connbeat-*.ndjson"} {
				files, err := filepath.Glob(pattern)
				require.NoError(t, err)
				require.NotEmpty(t, files, pattern)
				for _, f := range files {
					_, owner, _ := fileOwner(t, f)
					assert.Equal(t, "connbeat", owner, f)
				}
			}
		})
	}
}

// capsOnly is a unit that grants exactly caps, for runs with less than
// the unit's set.
func capsOnly(caps ...string) unitFile {
	return unitFile{
		"AmbientCapabilities":   {strings.Join(caps, " ")},
		"CapabilityBoundingSet": {strings.Join(caps, " ")},
	}
}

// asService is argv run as the unit runs the service: the connbeat user,
// the unit's capabilities (ambient and bounding), no new privileges, and
// the CONNBEAT_OPTS of its Environment= appended, as ExecStart does.
func asService(u unitFile, argv ...string) []string {
	ambient := setprivCaps(u.capabilities("AmbientCapabilities"))
	bounding := setprivCaps(u.capabilities("CapabilityBoundingSet"))
	out := []string{"setpriv", "--reuid", "connbeat", "--regid", "connbeat", "--init-groups",
		"--no-new-privs", "--bounding-set", "-all" + prefixComma(bounding)}
	if ambient != "" {
		out = append(out, "--inh-caps", ambient, "--ambient-caps", ambient)
	}
	out = append(out, argv...)
	if opts, ok := u.environment("CONNBEAT_OPTS"); ok {
		out = append(out, strings.Fields(opts)...)
	}
	return out
}

func prefixComma(list string) string {
	if list == "" {
		return ""
	}
	return "," + list
}

// writeAgentConfig writes agentConfig where the connbeat user can read it
// without capabilities: root-owned and not writable by others, as libbeat's
// ownership check requires.
func writeAgentConfig(t *testing.T, content string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "connbeat-packaging-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	path := filepath.Join(dir, "connbeat.yml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

// testConntrackDropIn runs the installed connbeat as the connbeat user with
// the conntrack input enabled: with the poll-only drop-in's capabilities it
// does not start and names CAP_NET_ADMIN; with the unit's, which hold it
// for the capture, it reports an entry created through ctnetlink.
func testConntrackDropIn(t *testing.T) {
	unit := parseUnit(t, unitPath)
	pollOnly := unit.with(parseUnit(t, dropInPath))
	cfg := writeAgentConfig(t, strings.Replace(agentConfig, "connbeat:\n",
		"connbeat:\n  conntrack:\n    enabled: true\n    set_sysctls: false\n", 1))
	run := func(u unitFile) *agent {
		a := startAgent(t, "/", asService(u, "/usr/bin/connbeat", "-c", cfg)...)
		a.logDir = "/var/log/connbeat"
		return a
	}

	a := run(pollOnly)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("connbeat kept running with the conntrack input and without CAP_NET_ADMIN")
	}
	assert.Error(t, a.waitErr)
	assert.Contains(t, a.stderrText(), "subscribing to conntrack events needs CAP_NET_ADMIN")

	a = run(unit)
	c, err := ct.Dial(nil)
	require.NoError(t, err)
	defer c.Close()
	const sport = 45679
	f := ct.NewFlow(unix.IPPROTO_UDP, 0, netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("203.0.113.9"), sport, 53, 30, 0)
	// Created until the agent is listening: a NEW before that is not seen.
	var ev map[string]any
	deadline := time.Now().Add(eventDeadline)
	for ev == nil && time.Now().Before(deadline) {
		_ = c.Delete(f)
		require.NoError(t, c.Create(f))
		time.Sleep(500 * time.Millisecond)
		a.mu.Lock()
		for _, e := range a.events {
			if field(e, "Type") == "NEW" && number(e, "Original.Layer4.Sport") == sport {
				ev = e
			}
		}
		a.mu.Unlock()
	}
	require.NoError(t, c.Delete(f))
	require.NotNil(t, ev, "no NEW of the entry; stderr:\n%s", a.stderrText())
	assert.Equal(t, "forwarded", field(ev, "connbeat.direction"))
	a.stop(t)
}
