package tests

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDiskQueueSurvivesRestart runs the agent with the disk queue from
// connbeat.reference.yml while its Kafka broker is down, stops it with the
// events still queued, starts the broker and a second agent on the same
// queue directory: the first run's events arrive, told apart by the first
// process's agent.ephemeral_id (the second run reports the same listeners
// again, as a new process).
func TestDiskQueueSurvivesRestart(t *testing.T) {
	t.Parallel()
	const ip = "127.0.0.10"
	port, mon := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	queueDir := t.TempDir()
	lns := ownListeners(t, ip, 20)
	run := func() *Agent {
		return outputAgent(t, "  poll_interval: 200ms\n  aggregation: 5m",
			kafkaOutput(addr, `version: "2.1.0"`),
			fmt.Sprintf("queue.mem.enabled: false\nqueue.disk:\n  max_size: 20MB\n  path: %q\n", queueDir),
			keepOwn(ip), monitoring(mon))
	}

	first := run()
	eventually(t, first, 60*time.Second, "the first run's events in the disk queue", func() bool {
		return agentStats(t, mon).sofar("libbeat.pipeline.events.published") >= float64(len(lns))
	})
	st := agentStats(t, mon)
	assert.Zero(t, st.num(t, "libbeat.output.events.acked"), "no broker yet")
	id := st.Str("beat.info.ephemeral_id")
	require.NotEmpty(t, id)
	assert.Equal(t, 0, first.Stop(syscall.SIGTERM))

	startKafka(t, port)
	r := readKafka(t, addr)
	second := run()
	fromFirst := func() map[float64]int {
		var evs []Event
		for _, e := range r.Events() {
			if e.Str("agent.ephemeral_id") == id {
				evs = append(evs, e)
			}
		}
		return listenerCounts(evs, ip)
	}
	eventually(t, second, 90*time.Second, "the first run's events from the disk queue in Kafka",
		func() bool { return allArrived(fromFirst(), lns) })
	for _, l := range lns {
		assert.Equal(t, 1, fromFirst()[portOf(l)], "listener %v from the first run once", l.Addr())
	}
}
