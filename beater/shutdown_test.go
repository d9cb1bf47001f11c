package beater

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/beatmonitoring"
	conf "github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowPipeline stands for libbeat's pipeline: its client acknowledges each
// event ackAfter after it was published (never, when ackAfter is 0), and
// its Close, like libbeat's, abandons what is not acknowledged yet.
type slowPipeline struct {
	ackAfter time.Duration

	mu        sync.Mutex
	listener  beat.EventListener
	published int
	acked     int
	closed    bool
	timers    []*time.Timer
}

func (p *slowPipeline) Connect() (beat.Client, error) { return p.ConnectWith(beat.ClientConfig{}) }

func (p *slowPipeline) ConnectWith(cfg beat.ClientConfig) (beat.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listener = cfg.EventListener
	return slowClient{p}, nil
}

// Close is libbeat's pipeline close: it stops acknowledging.
func (p *slowPipeline) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, t := range p.timers {
		t.Stop()
	}
	return nil
}

func (p *slowPipeline) counts() (published, acked int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.published, p.acked
}

type slowClient struct{ p *slowPipeline }

func (c slowClient) Publish(e beat.Event) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.published++
	p.listener.AddEvent(e, true)
	if p.ackAfter == 0 {
		return
	}
	p.timers = append(p.timers, time.AfterFunc(p.ackAfter, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.closed {
			p.acked++
			p.listener.ACKEvents(1)
		}
	}))
}

func (c slowClient) PublishAll(es []beat.Event) {
	for _, e := range es {
		c.Publish(e)
	}
}

func (c slowClient) Close() error { return nil }

// runBeater starts a Beater on p, polling this host through procfs, and
// returns the pipeline libbeat would close and Run's result.
func runBeater(t *testing.T, p *slowPipeline, settings map[string]any) (io.Closer, chan error) {
	t.Helper()
	b := &beat.Beat{Publisher: p, Monitoring: beatmonitoring.NewMonitoring(),
		Info: beat.Info{Beat: "connbeat", Logger: logp.NewNopLogger()}}
	cfg := map[string]any{"poll_interval": "100ms", "socket_source": "procfs", "expose_process_info": false}
	for k, v := range settings {
		cfg[k] = v
	}
	bt, err := New(b, conf.MustNewConfigFrom(cfg))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- bt.Run(b) }()
	require.Eventually(t, func() bool { n, _ := p.counts(); return n > 0 }, 30*time.Second, 10*time.Millisecond, "events published")
	return b.Publisher.(io.Closer), done
}

// TestDrainBeforePipelineClose: SIGTERM is libbeat closing the pipeline.
// connbeat stops the poll and waits for every published event to be
// acknowledged before the pipeline's Close goes on, however slow the
// output, within shutdown_timeout.
func TestDrainBeforePipelineClose(t *testing.T) {
	p := &slowPipeline{ackAfter: 700 * time.Millisecond}
	pipeline, done := runBeater(t, p, map[string]any{"shutdown_timeout": "10s"})
	start := time.Now()
	require.NoError(t, pipeline.Close())
	published, acked := p.counts()
	assert.Equal(t, published, acked, "every published event acknowledged before the output closed")
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "Close waited for the acknowledgements")
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the pipeline closed")
	}
}

// TestDrainBounded: an output that never acknowledges holds the stop for
// shutdown_timeout, not longer.
func TestDrainBounded(t *testing.T) {
	p := &slowPipeline{}
	pipeline, done := runBeater(t, p, map[string]any{"shutdown_timeout": "1s"})
	var closed atomic.Bool
	go func() { _ = pipeline.Close(); closed.Store(true) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after shutdown_timeout")
	}
	require.Eventually(t, closed.Load, 30*time.Second, 10*time.Millisecond)
	published, acked := p.counts()
	assert.NotZero(t, published)
	assert.Zero(t, acked)
}
