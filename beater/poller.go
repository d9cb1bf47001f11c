package beater

import (
	"context"
	"fmt"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"

	"github.com/connbeat/connbeat/classify"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/dedup"
	"github.com/connbeat/connbeat/event"
	"github.com/connbeat/connbeat/procs"
)

// PollStats summarise one poll for the debug log and benchmarks.
type PollStats struct {
	Sockets int
	Reports int
	Procs   procs.Stats
}

// Poller runs the steps of one poll: source -> procs -> classify -> dedup ->
// event. It reuses its buffers between polls and is not safe for concurrent
// use.
type Poller struct {
	source   connections.Source
	resolver *procs.Resolver // nil when process info is off
	classify *classify.Classifier
	dedup    *dedup.Cache
	events   *event.Builder

	sockets []connections.Socket
	records []classify.Record
	reports []dedup.Report
}

// NewPoller wires the steps. resolver may be nil.
func NewPoller(src connections.Source, resolver *procs.Resolver, cl *classify.Classifier, cache *dedup.Cache, eb *event.Builder) *Poller {
	return &Poller{source: src, resolver: resolver, classify: cl, dedup: cache, events: eb}
}

// Poll reads the sockets once and calls publish for each event to send.
func (p *Poller) Poll(ctx context.Context, now time.Time, publish func(beat.Event)) (PollStats, error) {
	var stats PollStats
	var err error
	p.sockets, err = p.source.Sockets(ctx, p.sockets[:0])
	if err != nil {
		return stats, fmt.Errorf("reading sockets from %s: %w", p.source.Name(), err)
	}
	stats.Sockets = len(p.sockets)

	var owner classify.OwnerFunc
	if p.resolver != nil {
		stats.Procs, err = p.resolver.Refresh(ctx, p.sockets)
		if err != nil {
			return stats, fmt.Errorf("joining sockets to processes: %w", err)
		}
		owner = p.resolver.Owner
	}
	if err := ctx.Err(); err != nil {
		return stats, err
	}

	p.records = p.classify.Classify(p.sockets, owner, p.records[:0])
	p.reports = p.dedup.Filter(p.records, now, p.reports[:0])
	stats.Reports = len(p.reports)
	for i := range p.reports {
		if ctx.Err() != nil {
			return stats, ctx.Err()
		}
		publish(p.events.Build(&p.reports[i], now))
	}
	return stats, nil
}
