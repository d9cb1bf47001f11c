// Package beater wires connbeat's steps into a libbeat Beater and owns the
// poll loop; it holds no parsing and no field names.
package beater

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// shutdownWait bounds how long Stop waits for queued events to be ACKed.
const shutdownWait = 10 * time.Second

// Beater is connbeat's libbeat Beater.
type Beater struct {
	cfg    config.Config
	logger *logp.Logger

	stopOnce sync.Once
	cancel   context.CancelFunc
	ctx      context.Context
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
	bt := &Beater{cfg: cfg, logger: logger.Named("connbeat"), ctx: ctx, cancel: cancel}
	if b.Publisher != nil {
		b.Publisher = boundedPipeline{Pipeline: b.Publisher, wait: closeWait, logger: bt.logger}
	}
	return bt, nil
}

// Run polls until Stop is called, or until the conntrack input fails,
// whose error it then returns.
func (bt *Beater) Run(b *beat.Beat) (runErr error) {
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

	client, err := b.Publisher.ConnectWith(beat.ClientConfig{
		// Queued events are sent again until the output takes them,
		// whatever its max_retries: an outage loses nothing that fits the
		// queue.
		PublishMode: beat.GuaranteedSend,
		// Close waits up to WaitClose for the events still queued to be
		// acknowledged by the output: SIGTERM loses nothing that can be sent.
		WaitClose: shutdownWait,
	})
	if err != nil {
		return fmt.Errorf("connecting to the publisher pipeline: %w", err)
	}
	closeClient := func() { _ = client.Close() }

	// Events dropped because the queue was full, in GET /stats as
	// connbeat.events.dropped.
	dropped := monitoring.NewUint(metrics, "events.dropped")
	publish := client.Publish
	if bt.cfg.QueueFullPolicy == config.QueueFullDrop {
		// Never block the poller on a dead output; drops are counted.
		h := newHandoff(client, handoffSize, stallAfter, dropped.Inc)
		publish = h.Publish
		defer h.Close(shutdownWait, closeClient)
	} else {
		// block: the poll waits in Publish for room in the queue.
		defer closeClient()
	}

	bt.logger.Infof("connbeat started: source=%s poll_interval=%s aggregation=%s event_format=%s queue_full=%s",
		p.SourceName(), bt.cfg.PollInterval, bt.cfg.Aggregation, bt.cfg.EventFormat, bt.cfg.QueueFullPolicy)
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
			bt.logger.Debugf("poll: %d sockets, %d fd tables read, %d events", stats.Sockets, stats.Procs.Rescanned, stats.Reports)
		}
		if d := dropped.Get(); d != lastDropped {
			bt.logger.Warnf("output queue full: dropped %d events since the last poll (queue_full: drop); they are sent again after the aggregation window if the sockets still exist", d-lastDropped)
			lastDropped = d
		}
		if time.Since(lastIPs) >= bt.cfg.Aggregation {
			p.SetLocalIPs(localIPs())
			lastIPs = time.Now()
		}
		select {
		case <-bt.ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Stop ends the running poll; Run then closes the client, which waits for
// queued events to be acknowledged.
func (bt *Beater) Stop() {
	bt.stopOnce.Do(bt.cancel)
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
