package beater

import (
	"io"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/logp"
)

// closeWait bounds how long a stop waits for libbeat's pipeline to close.
const closeWait = shutdownWait

// boundedPipeline keeps a stop from hanging on an output that never closes.
// On SIGTERM libbeat closes the publisher pipeline first and calls
// Beater.Stop only once that Close returns; the pipeline's Close waits for
// the output to close, and libbeat's Kafka output never finishes closing
// while its broker is unreachable and messages are in flight (sarama's
// shutdown waits for them; see elastic/beats#49208). Meanwhile the agent
// keeps polling and never exits.
//
// Close gives the pipeline closeWait, then lets the stop go on: the queue
// itself is closed by then (a disk queue has written what it holds), and
// what the output could not deliver is lost with the memory queue anyway.
type boundedPipeline struct {
	beat.Pipeline
	wait   time.Duration
	logger *logp.Logger
}

// Close closes the wrapped pipeline, waiting at most p.wait.
func (p boundedPipeline) Close() error {
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
