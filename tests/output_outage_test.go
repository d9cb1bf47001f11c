package tests

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// outage runs an agent against a Kafka broker on a fixed port that the test
// stops and starts again, with libbeat's monitoring endpoint on.
type outage struct {
	t       *testing.T
	ip      string // the test's own loopback address; the agent keeps only its events
	port    int
	cluster *kfake.Cluster
	reader  *kafkaReader
	mon     int
	agent   *Agent
	queue   int
}

func startOutage(t *testing.T, ip, section string, queue int) *outage {
	t.Helper()
	o := &outage{t: t, ip: ip, port: freePort(t), mon: freePort(t), queue: queue}
	o.startBroker()
	o.agent = outputAgent(t, "  poll_interval: 200ms\n"+section,
		kafkaOutput(o.addr(), `version: "2.1.0"`),
		fmt.Sprintf("queue.mem.events: %d\nqueue.mem.flush.min_events: 1", queue),
		monitoring(o.mon), debugPolls, keepOwn(ip))
	return o
}

func (o *outage) addr() string { return fmt.Sprintf("127.0.0.1:%d", o.port) }

func (o *outage) startBroker() {
	o.cluster = startKafka(o.t, o.port)
	o.reader = readKafka(o.t, o.addr())
}

// stopBroker closes the broker and its listening port: the agent's
// connections are cut and new ones are refused.
func (o *outage) stopBroker() {
	o.reader.Stop()
	o.cluster.Close()
}

func (o *outage) stats() Event { return agentStats(o.t, o.mon) }

// delivered counts the test's listener events in the current broker by port.
func (o *outage) delivered() map[float64]int { return listenerCounts(o.reader.Events(), o.ip) }

// checkBounded asserts what keeps memory bounded whatever the outage: the
// queue never holds more than its size, and the agent's resident memory
// stays far below what an unbounded backlog of a shared machine's tens of
// thousands of sockets per poll would take.
func (o *outage) checkBounded(st Event) {
	o.t.Helper()
	assert.Equal(o.t, float64(o.queue), st.num(o.t, "libbeat.pipeline.queue.max_events"))
	// active also counts the one event a blocked Publish holds.
	assert.LessOrEqual(o.t, st.num(o.t, "libbeat.pipeline.events.active"), float64(o.queue+1))
	assert.LessOrEqual(o.t, st.num(o.t, "libbeat.pipeline.queue.filled.events"), float64(o.queue))
	assert.Less(o.t, st.num(o.t, "beat.memstats.rss"), float64(1<<30))
}

var droppedWarning = regexp.MustCompile(`output queue full: dropped (\d+) events since the last poll`)

// loggedDrops returns the queue-full warnings in the log and the sum of
// the events they report.
func loggedDrops(log string) (warnings, events int) {
	for _, m := range droppedWarning.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		warnings++
		events += n
	}
	return warnings, events
}

// TestKafkaOutage stops the Kafka broker while new connections keep
// appearing and starts a new one on the same port. Each case asserts on the
// agent's own counters (GET /stats) and on what the broker received, never
// on how long something took.
func TestKafkaOutage(t *testing.T) {
	t.Parallel()

	// The default policy with a queue big enough for the outage: nothing is
	// lost, nothing arrives twice, and the poll never stops.
	t.Run("queue holds a 20s outage", func(t *testing.T) {
		t.Parallel()
		o := startOutage(t, "127.0.0.2", "  aggregation: 5m\n  queue_full: drop", 4096)
		pre := ownListeners(t, o.ip, 1)
		eventually(t, o.agent, 60*time.Second, "listener before the outage in Kafka",
			func() bool { return allArrived(o.delivered(), pre) })

		o.stopBroker()
		polls := countPolls(o.agent.Stderr())
		var during []net.Listener
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
			during = append(during, ownListeners(t, o.ip, 2)...)
			time.Sleep(500 * time.Millisecond)
		}
		eventually(t, o.agent, 30*time.Second, "every outage listener waiting in the queue", func() bool {
			return o.stats().num(t, "libbeat.pipeline.events.active") >= float64(len(during))
		})
		st := o.stats()
		assert.Zero(t, st.num(t, "connbeat.events.dropped"), "nothing dropped for a full queue")
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.failed"), "nothing refused by the pipeline")
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.dropped"), "nothing given up by the output")
		o.checkBounded(st)
		assert.Greater(t, countPolls(o.agent.Stderr())-polls, 10, "the poll kept running during the outage")

		o.startBroker()
		eventually(t, o.agent, 120*time.Second, "every listener opened during the outage in Kafka",
			func() bool { return allArrived(o.delivered(), during) })
		// Give duplicates the chance to show up: a retried batch would
		// arrive within a few polls.
		waitPolls(t, o.agent, countPolls(o.agent.Stderr())+10)
		got := o.delivered()
		for _, l := range during {
			assert.Equal(t, 1, got[portOf(l)], "listener %v arrives exactly once", l.Addr())
		}
		st = o.stats()
		assert.Zero(t, st.num(t, "connbeat.events.dropped"))
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.failed"))
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.dropped"))
		o.checkBounded(st)
		warnings, _ := loggedDrops(o.agent.Stderr())
		assert.Zero(t, warnings)
	})

	// queue_full: drop with a queue too small for the outage: new events are
	// dropped and counted, the warning comes at most once per poll, the poll
	// keeps running, and what was dropped is sent again after the
	// aggregation window while its socket exists.
	t.Run("drop with a tiny queue", func(t *testing.T) {
		t.Parallel()
		o := startOutage(t, "127.0.0.3", "  aggregation: 5s\n  queue_full: drop", 64)
		pre := ownListeners(t, o.ip, 1)
		eventually(t, o.agent, 60*time.Second, "listener before the outage in Kafka",
			func() bool { return allArrived(o.delivered(), pre) })

		o.stopBroker()
		// More than the queue (64) and connbeat's hand-off to it (512) hold.
		during := ownListeners(t, o.ip, 1000)
		eventually(t, o.agent, 30*time.Second, "drops counted and logged", func() bool {
			w, _ := loggedDrops(o.agent.Stderr())
			return w > 0 && o.stats().num(t, "connbeat.events.dropped") > 0
		})
		polls := countPolls(o.agent.Stderr())
		waitPolls(t, o.agent, polls+5) // still polling while events are dropped
		log := o.agent.Stderr()
		st := o.stats()
		o.checkBounded(st)
		warnings, logged := loggedDrops(log)
		assert.LessOrEqual(t, warnings, countPolls(log), "at most one warning per poll")
		dropped := st.num(t, "connbeat.events.dropped")
		assert.GreaterOrEqual(t, dropped, float64(len(during)-o.queue-512-1), "what did not fit was dropped")
		assert.LessOrEqual(t, float64(logged), dropped, "the log reports the drops /stats counts")
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.failed"), "libbeat refused nothing")
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.dropped"), "the queue's events wait for the output")

		// At most queue + hand-off + the one being published could be held
		// through the outage; every listener still arrives, so the dropped
		// ones were sent again once the aggregation window had passed.
		require.Less(t, o.queue+512+1, len(during))
		o.startBroker()
		eventually(t, o.agent, 120*time.Second, "every listener, dropped ones sent again after the window",
			func() bool { return allArrived(o.delivered(), during) })
		assert.Zero(t, o.stats().num(t, "libbeat.pipeline.events.dropped"))
	})

	// queue_full: block: once the queue is full the poll waits for room,
	// nothing is dropped, and every event arrives once the broker is back.
	t.Run("block waits", func(t *testing.T) {
		t.Parallel()
		o := startOutage(t, "127.0.0.4", "  aggregation: 5m\n  queue_full: block", 64)
		pre := ownListeners(t, o.ip, 1)
		eventually(t, o.agent, 60*time.Second, "listener before the outage in Kafka",
			func() bool { return allArrived(o.delivered(), pre) })

		o.stopBroker()
		during := ownListeners(t, o.ip, 200)
		eventually(t, o.agent, 30*time.Second, "queue full", func() bool {
			return o.stats().num(t, "libbeat.pipeline.events.active") >= float64(o.queue)
		})
		// 200 events do not fit 64: the poll that publishes them is stuck
		// in Publish. At most the poll in progress ends.
		polls := countPolls(o.agent.Stderr())
		time.Sleep(3 * time.Second)
		assert.LessOrEqual(t, countPolls(o.agent.Stderr()), polls+1, "the poll waits while the queue is full")
		st := o.stats()
		o.checkBounded(st)
		assert.Zero(t, st.num(t, "connbeat.events.dropped"))
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.failed"))

		o.startBroker()
		eventually(t, o.agent, 120*time.Second, "every listener opened during the outage in Kafka",
			func() bool { return allArrived(o.delivered(), during) })
		waitPolls(t, o.agent, countPolls(o.agent.Stderr())+10) // polling resumed
		got := o.delivered()
		for _, l := range during {
			assert.Equal(t, 1, got[portOf(l)], "listener %v arrives exactly once", l.Addr())
		}
		st = o.stats()
		assert.Zero(t, st.num(t, "connbeat.events.dropped"))
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.failed"))
		assert.Zero(t, st.num(t, "libbeat.pipeline.events.dropped"))
		log := o.agent.Stderr()
		assert.NotContains(t, log, "output queue full")
		assert.True(t, strings.Contains(log, "queue_full=block"), "the start line names the policy")
	})

	// SIGTERM while the broker is down and the queue is full: the agent
	// exits. libbeat's Kafka output never finishes closing in this state;
	// connbeat bounds the wait (beater/shutdown.go).
	for i, policy := range []string{"drop", "block"} {
		t.Run("SIGTERM during the outage with "+policy, func(t *testing.T) {
			t.Parallel()
			o := startOutage(t, fmt.Sprintf("127.0.0.%d", 5+i), "  aggregation: 5m\n  queue_full: "+policy, 64)
			pre := ownListeners(t, o.ip, 1)
			eventually(t, o.agent, 60*time.Second, "listener before the outage in Kafka",
				func() bool { return allArrived(o.delivered(), pre) })
			o.stopBroker()
			ownListeners(t, o.ip, 200)
			eventually(t, o.agent, 30*time.Second, "queue full", func() bool {
				return o.stats().num(t, "libbeat.pipeline.events.active") >= float64(o.queue)
			})
			assert.Equal(t, 0, o.agent.Stop(syscall.SIGTERM), "exit code")
			assert.Contains(t, o.agent.Stderr(), "the output did not close within")
		})
	}
}
