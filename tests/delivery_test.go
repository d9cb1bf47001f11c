package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metricsAtExit makes libbeat log its counters once, when it stops
// ("Total metrics").
const metricsAtExit = "logging.metrics.enabled: true\nlogging.metrics.period: 1h\n"

// totalMetrics returns the counters libbeat logged at exit.
func totalMetrics(t *testing.T, log string) Event {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"message":"Total metrics"`) {
			continue
		}
		var ev Event
		require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
		m, ok := ev.Get("monitoring.metrics").(map[string]interface{})
		require.True(t, ok, "no monitoring.metrics in %s", line)
		return Event(m)
	}
	t.Fatalf("no Total metrics line in the log:\n%s", tail(log, 4096))
	return nil
}

// count is a counter of totalMetrics; an absent one is 0 (libbeat logs
// only the counters that moved).
func (e Event) count(path string) int {
	v, _ := e.Get(path).(float64)
	return int(v)
}

// accounting is what the agent says it did with its events: published to
// libbeat's queue, acknowledged back to connbeat, and of those, acked
// (delivered) and dropped (given up, counted) by the output; plus the
// events connbeat dropped before the queue (queue_full: drop).
type accounting struct {
	published, acknowledged, acked, outputDropped, connbeatDropped int
}

func accountingOf(m Event) accounting {
	return accounting{
		published:       m.count("connbeat.events.published"),
		acknowledged:    m.count("connbeat.events.acknowledged"),
		acked:           m.count("libbeat.output.events.acked"),
		outputDropped:   m.count("libbeat.output.events.dropped"),
		connbeatDropped: m.count("connbeat.events.dropped"),
	}
}

// balanced reports whether nothing published was lost silently: every
// event was acknowledged, either delivered or dropped with a count.
func (a accounting) balanced() bool {
	return a.published == a.acknowledged && a.acknowledged == a.acked+a.outputDropped
}

// stopWithin sends sig and returns the exit code and how long the agent
// took to exit.
func stopWithin(t *testing.T, a *Agent, sig syscall.Signal) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	code := a.Stop(sig)
	return code, time.Since(start)
}

func httpOutput(addr string, extra ...string) string {
	return fmt.Sprintf("output.http:\n  hosts: [\"http://%s/ingest\"]\n  backoff: {init: 200ms, max: 1s}\n  timeout: 10s\n%s",
		addr, strings.Join(extra, "\n"))
}

// TestSIGTERMDrainsSlowHTTP: SIGTERM while the endpoint takes 3 s to
// answer a batch. libbeat closes the output after its fixed 1 s wait; the
// drain before it (connbeat.shutdown_timeout, 10 s by default) lets the
// answer arrive: every published event is acknowledged, none lost.
func TestSIGTERMDrainsSlowHTTP(t *testing.T) {
	t.Parallel()
	const ip, n = "127.0.0.21", 20
	sink := newHTTPSink(t)
	proxy := startFaultProxy(t, sink.addr, slow, 3*time.Second)
	lns := ownListeners(t, ip, n)
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 10m", httpOutput(proxy.Addr()), keepOwn(ip), metricsAtExit)

	eventually(t, a, 60*time.Second, "the batch at the endpoint, its answer held by the proxy", func() bool {
		return len(listenerCounts(sink.events(), ip)) == n
	})
	code, took := stopWithin(t, a, syscall.SIGTERM)
	assert.Equal(t, 0, code)
	assert.Less(t, took, 15*time.Second, "the drain is bounded by shutdown_timeout")

	got := accountingOf(totalMetrics(t, a.Stderr()))
	assert.Equal(t, accounting{published: n, acknowledged: n, acked: n}, got, "every published event acknowledged before the output closed")
	assert.Contains(t, a.Stderr(), "every published event was acknowledged")
	assert.True(t, allArrived(listenerCounts(sink.events(), ip), lns))
}
