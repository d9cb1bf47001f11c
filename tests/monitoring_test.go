package tests

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMonitoringCounters reads connbeat's counters from libbeat's HTTP
// monitoring endpoint and its periodic metrics log line: every figure the
// pipeline computes must reach both.
func TestMonitoringCounters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()

	mon := freePort(t)
	a := RunAgent(t, AgentOptions{
		Connbeat: "  poll_interval: 200ms\n  aggregation: 1s\n  socket_source: netlink\n  capture: poll",
		Extra:    monitoring(mon) + "logging.metrics.enabled: true\nlogging.metrics.period: 1s\n",
	})
	port := float64(ln.Addr().(*net.TCPAddr).Port)
	a.WaitFor("the test's listener", func(e Event) bool { return e.Get("local_port") == port })

	// Two polls at least, so the counters have moved past their first value.
	var stats Event
	deadline := time.Now().Add(20 * time.Second)
	for {
		stats = agentStats(t, mon)
		if polls, _ := stats.Get("connbeat.polls").(float64); polls >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	num := func(path string) float64 {
		v, ok := stats.Get(path).(float64)
		require.True(t, ok, "%s in /stats: %v", path, stats.Get("connbeat"))
		return v
	}
	assert.GreaterOrEqual(t, num("connbeat.polls"), 2.0)
	assert.Zero(t, num("connbeat.poll_errors"))
	assert.GreaterOrEqual(t, num("connbeat.sockets"), 3.0, "the test's listener and both ends of its connection")
	assert.GreaterOrEqual(t, num("connbeat.reports"), 2.0)
	assert.Positive(t, num("connbeat.procs.processes"))
	assert.Positive(t, num("connbeat.procs.fd_tables_read"))
	num("connbeat.procs.denied")
	num("connbeat.procs.unresolved")
	assert.Positive(t, num("connbeat.dedup.keys"))
	assert.Equal(t, num("connbeat.polls"), num("connbeat.socket_source.netlink.polls"), "every poll read through netlink")
	assert.Zero(t, num("connbeat.socket_source.netlink.errors"))
	assert.GreaterOrEqual(t, num("connbeat.socket_source.netlink.sockets"), 3.0)
	num("connbeat.socket_source.netlink.anomalies")
	assert.Zero(t, num("connbeat.socket_source.switches"))
	assert.Zero(t, num("connbeat.events.dropped"))

	// libbeat's metrics log line reports the non-zero counters of the
	// period under monitoring.metrics.
	eventually(t, a, 20*time.Second, "a metrics log line with connbeat counters", func() bool {
		for _, line := range strings.Split(a.Stderr(), "\n") {
			if strings.Contains(line, "Non-zero metrics") && strings.Contains(line, `"connbeat":{`) &&
				strings.Contains(line, `"polls":`) && strings.Contains(line, `"socket_source":{`) {
				return true
			}
		}
		return false
	})
}

// TestMonitoringCaptureCounters: with the event capture, /stats carries
// its counters under connbeat.capture, and the polls between two full
// reads leave the socket source alone.
func TestMonitoringCaptureCounters(t *testing.T) {
	mon := freePort(t)
	a := RunAgent(t, AgentOptions{
		Connbeat: "  poll_interval: 200ms\n  aggregation: 30s\n  socket_source: netlink\n  capture: events",
		Extra:    monitoring(mon),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := float64(ln.Addr().(*net.TCPAddr).Port)
	a.WaitFor("the test's listener, from the capture", func(e Event) bool { return e.Get("local_port") == port })
	var stats Event
	eventually(t, a, 20*time.Second, "three polls", func() bool {
		stats = agentStats(t, mon)
		polls, _ := stats.Get("connbeat.polls").(float64)
		return polls >= 3
	})
	for _, k := range []string{"lost", "records", "decode_errors", "evicted", "untracked_closes", "pending_dropped",
		"flows_dropped", "map_insert_failed.connections", "map_insert_failed.udp_pairs", "map_insert_failed.listeners"} {
		_, ok := stats.Get("connbeat.capture." + k).(float64)
		assert.True(t, ok, "connbeat.capture.%s in /stats: %v", k, stats.Get("connbeat.capture"))
	}
	assert.Positive(t, stats.Get("connbeat.capture.records"), "the listen was read from the ring buffer")
	assert.Zero(t, stats.Get("connbeat.capture.lost"))
	assert.Equal(t, 1.0, stats.Get("connbeat.socket_source.netlink.polls"), "one full read in the window")
	assert.Positive(t, stats.Get("connbeat.procs.processes"), "the full read's gauges are kept")
}
