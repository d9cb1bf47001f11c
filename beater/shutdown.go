package beater

import (
	"io"
	"sync"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"
)

// closeWait bounds how long a stop waits for libbeat's pipeline to close
// once connbeat's own drain is over.
const closeWait = 10 * time.Second

// clientCloseWait bounds the close of connbeat's own publisher client after
// the drain: it can wait on an output that never answers.
const clientCloseWait = 2 * time.Second

// boundedPipeline puts connbeat's drain before libbeat's pipeline close,
// and keeps a stop from hanging on an output that never closes.
//
// On SIGTERM libbeat closes the publisher pipeline first and calls
// Beater.Stop only once that Close returns. The pipeline's Close waits one
// second for the queue to drain (a value libbeat fixes), then closes the
// output: a request or confirm wait in progress is abandoned and what the
// queue held is lost. So Close first runs drain, which stops the poll and
// waits up to connbeat.shutdown_timeout for every published event to be
// acknowledged, with the output still running.
//
// Then the pipeline gets closeWait to close: libbeat's Kafka output never
// finishes closing while its broker is unreachable and messages are in
// flight (sarama's shutdown waits for them; see elastic/beats#49208), and
// the agent would never exit.
type boundedPipeline struct {
	beat.Pipeline
	wait   time.Duration
	logger *logp.Logger
	// drain runs before the pipeline is closed; closed after.
	drain  func()
	closed func()
}

// Close drains, then closes the wrapped pipeline, waiting at most p.wait.
func (p boundedPipeline) Close() error {
	if p.drain != nil {
		p.drain()
	}
	if p.closed != nil {
		defer p.closed()
	}
	c, ok := p.Pipeline.(io.Closer)
	if !ok {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(p.wait):
		p.logger.Warnf("the output did not close within %s; stopping without it (events it still held are lost)", p.wait)
		return nil
	}
}

// inflight counts the events published to libbeat and not yet
// acknowledged (delivered, or dropped and counted by the output). It is
// the client's beat.EventListener; published and acknowledged are
// connbeat.events.published and .acknowledged in the monitoring registry.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0

	published, acknowledged *monitoring.Uint
}

func newInflight(reg *monitoring.Registry) *inflight {
	i := &inflight{
		idle:         make(chan struct{}),
		published:    monitoring.NewUint(reg, "events.published"),
		acknowledged: monitoring.NewUint(reg, "events.acknowledged"),
	}
	close(i.idle)
	return i
}

func (i *inflight) AddEvent(_ beat.Event, published bool) {
	if !published {
		return
	}
	i.published.Inc()
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.n == 0 {
		i.idle = make(chan struct{})
	}
	i.n++
}

func (i *inflight) ACKEvents(n int) {
	i.acknowledged.Add(uint64(n))
	i.mu.Lock()
	defer i.mu.Unlock()
	i.n -= n
	if i.n <= 0 && n > 0 {
		i.n = 0
		select {
		case <-i.idle:
		default:
			close(i.idle)
		}
	}
}

func (i *inflight) ClientClosed() {}

// pending is the number of events not yet acknowledged.
func (i *inflight) pending() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.n
}

// wait returns true once every event is acknowledged, false at deadline.
func (i *inflight) wait(deadline time.Time) bool {
	i.mu.Lock()
	idle := i.idle
	i.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return i.pending() == 0
	}
}
