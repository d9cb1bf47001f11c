// Package beater wires connbeat's steps into a libbeat Beater and owns the
// poll loop; it holds no parsing and no field names.
package beater

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	conf "github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/event"
	"github.com/connbeat/connbeat/pipeline"
)

// Beater is connbeat's libbeat Beater.
type Beater struct {
	cfg    config.Config
	logger *logp.Logger

	stopOnce sync.Once
	cancel   context.CancelFunc
	ctx      context.Context

	mu        sync.Mutex
	running   bool          // Run has started
	draining  bool          // the stop came through the pipeline's Close
	stoppedAt time.Time     // when Stop was first called
	runDone   chan struct{} // closed when Run has drained and returns
	force     func()        // closes the publisher client; set by Run
	// pipelineClosed is closed once libbeat's pipeline Close is over.
	pipelineClosed     chan struct{}
	pipelineClosedOnce sync.Once
}

// New validates the `connbeat:` section; libbeat calls it before Run, so a
// bad config fails the start before anything is published.
func New(b *beat.Beat, raw *conf.C) (beat.Beater, error) {
	cfg, err := config.Load(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logger := b.Info.Logger
	if logger == nil {
		logger = logp.NewLogger("connbeat")
	}
	bt := &Beater{
		cfg: cfg, logger: logger.Named("connbeat"), ctx: ctx, cancel: cancel,
		runDone: make(chan struct{}), pipelineClosed: make(chan struct{}),
	}
	if b.Publisher != nil {
		b.Publisher = boundedPipeline{
			Pipeline: b.Publisher, wait: closeWait, logger: bt.logger,
			drain:  bt.drain,
			closed: func() { bt.pipelineClosedOnce.Do(func() { close(bt.pipelineClosed) }) },
		}
	}
	return bt, nil
}

// Run polls until Stop is called, or until the conntrack input fails,
// whose error it then returns; then it waits up to shutdown_timeout for
// the events it published to be acknowledged.
func (bt *Beater) Run(b *beat.Beat) (runErr error) {
	bt.mu.Lock()
	bt.running = true
	bt.mu.Unlock()
	defer bt.awaitPipelineClose()
	defer close(bt.runDone)
	metrics := b.Monitoring.StatsRegistry().GetOrCreateRegistry("connbeat")
	host := event.Host{
		Hostname: b.Info.Hostname,
		Name:     b.Info.Name,
		LocalIPs: localIPs(),
	}
	p, err := pipeline.New(pipeline.Options{
		Config:  bt.cfg,
		Host:    host,
		Logger:  bt.logger,
		Metrics: metrics,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	if bt.cfg.FlowEvents && !p.FlowEvents() {
		bt.logger.Warn("connbeat.flow_events is on, but connections are polled (no event capture runs): no flow events are sent")
	}

	if bt.cfg.Conntrack.Enabled {
		ct, err := bt.startConntrack(bt.ctx, b, metrics, host)
		if err != nil {
			return err
		}
		defer func() {
			bt.Stop()
			<-ct.done
			if runErr == nil {
				runErr = ct.err
			}
		}()
	}

	acks := newInflight(metrics)
	normalize := false
	client, err := b.Publisher.ConnectWith(beat.ClientConfig{
		// Queued events are sent again until the output takes them,
		// whatever its max_retries: an outage loses nothing that fits the
		// queue.
		PublishMode: beat.GuaranteedSend,
		// Counts what is published and not yet acknowledged: a stop waits
		// for it (drain).
		EventListener: acks,
		// The events hold only what libbeat's normalization would give
		// them (event.TestEventsNeedNoNormalization): its deep copy of each
		// event would double what the queue holds, and cost CPU per event.
		Processing: beat.ProcessingConfig{EventNormalization: &normalize},
	})
	if err != nil {
		return fmt.Errorf("connecting to the publisher pipeline: %w", err)
	}
	closeClient := sync.OnceFunc(func() { _ = client.Close() })
	bt.mu.Lock()
	bt.force = closeClient
	bt.mu.Unlock()

	// Events dropped because the queue was full, in GET /stats as
	// connbeat.events.dropped.
	dropped := monitoring.NewUint(metrics, "events.dropped")
	publish := client.Publish
	var h *handoff
	if bt.cfg.QueueFullPolicy == config.QueueFullDrop {
		// Never block the poller on a dead output; drops are counted.
		h = newHandoff(client, handoffSize, stallAfter, dropped.Inc)
		publish = h.Publish
	}
	// block: the poll waits in Publish for room in the queue.
	defer bt.shutdown(h, acks, closeClient)

	capture := config.CapturePoll
	if p.Capturing() {
		capture = config.CaptureEvents
	}
	bt.logger.Infof("connbeat started: source=%s capture=%s poll_interval=%s aggregation=%s event_format=%s flow_events=%t queue_full=%s shutdown_timeout=%s",
		p.SourceName(), capture, bt.cfg.PollInterval, bt.cfg.Aggregation, bt.cfg.EventFormat, p.FlowEvents(), bt.cfg.QueueFullPolicy, bt.cfg.ShutdownTimeout)
	return bt.loop(p, publish, dropped)
}

func (bt *Beater) loop(p *pipeline.Pipeline, publish func(beat.Event), dropped *monitoring.Uint) error {
	ticker := time.NewTicker(bt.cfg.PollInterval)
	defer ticker.Stop()
	var (
		first       = true
		lastIPs     = time.Now()
		lastDropped = dropped.Get()
		failing     bool
	)
	for {
		stats, err := p.Poll(bt.ctx, time.Now(), publish)
		switch {
		case errors.Is(err, context.Canceled):
			return nil
		case err != nil && !failing:
			// Log the first failure of a run of them, not one per poll.
			bt.logger.Errorf("poll failed (will keep retrying every %s): %v", bt.cfg.PollInterval, err)
			failing = true
		case err == nil && failing:
			bt.logger.Info("polling recovered")
			failing = false
		case err == nil && first:
			bt.logger.Infof("first poll: %d sockets, %d processes, %d not readable, %d events",
				stats.Sockets, stats.Procs.Processes, stats.Procs.Denied, stats.Reports)
			first = false
		default:
			bt.logger.Debugf("poll: %d sockets, %d fd tables read, %d events, %d flow events", stats.Sockets, stats.Procs.Rescanned, stats.Reports, stats.Flows)
		}
		if stats.Full && p.Capturing() {
			// With the event capture a full read comes once a window, and
			// what it needed (a buffer per socket of the host) is garbage
			// by now: handing it back to the kernel at once keeps an idle
			// agent's memory at what it holds between two, where the
			// runtime would keep twice its heap until the next collection.
			debug.FreeOSMemory()
		}
		if d := dropped.Get(); d != lastDropped {
			bt.logger.Warnf("output queue full: dropped %d events since the last poll (queue_full: drop); they are sent again after the aggregation window if the sockets still exist", d-lastDropped)
			lastDropped = d
		}
		if time.Since(lastIPs) >= bt.cfg.Aggregation {
			p.SetLocalIPs(localIPs())
			lastIPs = time.Now()
		}
		if !bt.waitPoll(p, ticker.C, publish) {
			return nil
		}
	}
}

// waitPoll waits for the next poll's tick, publishing meanwhile, each
// time the capture has read some (Ready), the flows it read and, when
// many, its connections: under churn they reach the output as a stream,
// in small batches, not held in memory for a poll interval. False when
// the agent stops.
func (bt *Beater) waitPoll(p *pipeline.Pipeline, pollTick <-chan time.Time, publish func(beat.Event)) bool {
	for {
		select {
		case <-bt.ctx.Done():
			return false
		case <-pollTick:
			return true
		case <-p.Ready():
			// Only the stop's cancellation fails them.
			now := time.Now()
			if p.PublishReadFlows(bt.ctx, now, publish) != nil || p.PublishCaptured(bt.ctx, now, publish) != nil {
				return false
			}
		}
	}
}

// Stop ends the running poll; Run then waits up to shutdown_timeout for
// the events it published to be acknowledged.
func (bt *Beater) Stop() {
	bt.stopOnce.Do(func() {
		bt.mu.Lock()
		bt.stoppedAt = time.Now()
		bt.mu.Unlock()
		bt.cancel()
	})
}

// drain runs when libbeat closes the publisher pipeline, before the
// output is closed: it stops the poll and waits until Run has seen every
// published event acknowledged or shutdown_timeout has passed. A poll
// stuck in Publish on a full queue (queue_full: block, output down) is
// released by closing the client at the deadline.
func (bt *Beater) drain() {
	bt.Stop()
	bt.mu.Lock()
	bt.draining = true
	running, deadline := bt.running, bt.stoppedAt.Add(bt.cfg.ShutdownTimeout)
	bt.mu.Unlock()
	if !running {
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-bt.runDone:
		return
	case <-t.C:
	}
	bt.mu.Lock()
	force := bt.force
	bt.mu.Unlock()
	if force != nil {
		// Closing the client can itself wait on an output that never
		// answers (Kafka with its broker gone): bounded, like the rest.
		go force()
	}
	t.Reset(clientCloseWait)
	select {
	case <-bt.runDone:
	case <-t.C:
		bt.logger.Warnf("the poll loop did not end within %s of shutdown_timeout; stopping without it", clientCloseWait)
	}
}

// shutdown ends Run: what the hand-off holds goes to libbeat, and every
// published event gets until shutdown_timeout after Stop to be
// acknowledged; then the client is closed.
func (bt *Beater) shutdown(h *handoff, acks *inflight, closeClient func()) {
	bt.Stop() // Run may also end on its own (an error)
	bt.mu.Lock()
	deadline := bt.stoppedAt.Add(bt.cfg.ShutdownTimeout)
	bt.mu.Unlock()
	if h != nil {
		h.Close(time.Until(deadline), closeClient)
	}
	if !acks.wait(deadline) {
		bt.logger.Warnf("stopping with %d events not acknowledged by the output within connbeat.shutdown_timeout (%s); with the memory queue they are lost",
			acks.pending(), bt.cfg.ShutdownTimeout)
	} else {
		bt.logger.Info("stopping: every published event was acknowledged by the output")
	}
	closed := make(chan struct{})
	go func() {
		closeClient()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(clientCloseWait):
		bt.logger.Warnf("the publisher client did not close within %s; stopping without it", clientCloseWait)
	}
}

// awaitPipelineClose keeps Run from returning, and the process from
// exiting, while the pipeline's Close that started the stop is still
// closing the output; bounded like that Close.
func (bt *Beater) awaitPipelineClose() {
	bt.mu.Lock()
	draining := bt.draining
	bt.mu.Unlock()
	if !draining {
		return
	}
	t := time.NewTimer(closeWait + time.Second)
	defer t.Stop()
	select {
	case <-bt.pipelineClosed:
	case <-t.C:
	}
}

// localIPs lists the host's interface addresses, loopback excluded.
func localIPs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var ips []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() {
			continue
		}
		ips = append(ips, ipn.IP.String())
	}
	return ips
}
