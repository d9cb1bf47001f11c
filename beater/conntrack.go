package beater

import (
	"context"
	"fmt"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/event"
	"github.com/connbeat/connbeat/flowjoin"
	"github.com/connbeat/connbeat/inputs/conntrack"
	"github.com/connbeat/connbeat/model"
)

// dropLogEvery bounds the log lines about conntrack events dropped on a
// full output queue.
const dropLogEvery = 10 * time.Second

// conntrackRun is the running conntrack input: its goroutine, and what
// Stop releases once the goroutine has returned.
type conntrackRun struct {
	done chan struct{}
	err  error // the input's, valid once done is closed
}

// startConntrack opens the conntrack input and its process join and runs
// them in a goroutine that publishes through a libbeat client of its own,
// until ctx ends. Opening fails the start: an operator who enabled the
// input must learn at once that it cannot run (CAP_NET_ADMIN, mostly).
func (bt *Beater) startConntrack(ctx context.Context, b *beat.Beat, metrics *monitoring.Registry, host event.Host) (*conntrackRun, error) {
	cfg := bt.cfg
	join, err := flowjoin.New(flowjoin.Options{
		Processes: cfg.ExposeProcessInfo,
		ProcPath:  cfg.ProcPath,
		Metadata:  cfg.ProcessMetadata(),
		Logger:    bt.logger,
		Metrics:   metrics,
	})
	if err != nil {
		return nil, err
	}
	in, err := conntrack.Open(conntrack.Options{
		Events:        cfg.Conntrack.FlowEvents(),
		ReceiveBuffer: int(cfg.Conntrack.ReceiveBuffer),
		QueueSize:     int(cfg.Conntrack.QueueSize),
		TrackFlows:    cfg.Conntrack.TrackFlows,
		SetSysctls:    cfg.Conntrack.SetSysctls,
		Join:          join,
		Logger:        bt.logger,
		Metrics:       metrics,
	})
	if err != nil {
		join.Close()
		return nil, fmt.Errorf("%w (connbeat.conntrack.enabled is true)", err)
	}
	// The events hold only the types libbeat's normalization would give
	// them (strings, numbers, UTC times, mapstr.M;
	// event.TestEventsNeedNoNormalization): skipping its deep copy of
	// every event saves CPU per flow.
	normalize := false
	client, err := b.Publisher.ConnectWith(beat.ClientConfig{
		PublishMode: beat.GuaranteedSend,
		WaitClose:   bt.cfg.ShutdownTimeout,
		Processing:  beat.ProcessingConfig{EventNormalization: &normalize},
	})
	if err != nil {
		in.Close()
		join.Close()
		return nil, fmt.Errorf("connecting the conntrack input to the publisher pipeline: %w", err)
	}

	dropped := monitoring.NewUint(metrics.GetOrCreateRegistry("conntrack"), "events.dropped")
	publish := client.Publish
	closeClient := func() { _ = client.Close() }
	var h *handoff
	if cfg.QueueFullPolicy == config.QueueFullDrop {
		// A dead output must not stop the receive loop: the kernel would
		// drop events for it, and re-syncs would pile up.
		h = newHandoff(client, handoffSize, stallAfter, dropped.Inc)
		publish = h.Publish
	}
	builder := event.NewBuilder(cfg.EventFormat, host)
	var (
		lastDropLog time.Time
		lastDropped uint64
	)
	emit := func(f *model.Flow) {
		publish(builder.BuildFlow(f, time.Now()))
		if d := dropped.Get(); d != lastDropped && time.Since(lastDropLog) >= dropLogEvery {
			bt.logger.Warnf("output queue full: dropped %d conntrack events (queue_full: drop; connbeat.conntrack.events.dropped)", d-lastDropped)
			lastDropped, lastDropLog = d, time.Now()
		}
	}

	run := &conntrackRun{done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = in.Run(ctx, emit)
		in.Close()
		join.Close()
		if h != nil {
			h.Close(bt.cfg.ShutdownTimeout, closeClient)
		} else {
			closeClient()
		}
		if run.err != nil {
			// The agent stops: a service manager restarts it, with a
			// fresh socket.
			bt.logger.Errorf("conntrack input stopped: %v", run.err)
			bt.Stop()
		}
	}()
	return run, nil
}
