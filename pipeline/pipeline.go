// Package pipeline runs one poll through connbeat's stages, in the order the
// data flows: connections (sockets) -> procs (owners) -> classify ->
// peers (the owner of a connection's other end, when local) -> dedup ->
// event. The agent and the benchmark build it through the same
// New, so what the benchmark measures is what the agent runs.
package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/capture"
	"github.com/connbeat/connbeat/classify"
	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/dedup"
	"github.com/connbeat/connbeat/event"
	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/peers"
	"github.com/connbeat/connbeat/procs"
)

// Options configure a pipeline.
type Options struct {
	Config config.Config
	// Host describes the agent's host in classic events.
	Host event.Host
	// Logger receives the lines a stage says once (a source passed over,
	// processes the agent may not read).
	Logger *logp.Logger
	// Metrics is where the stages' counters are registered (libbeat's
	// monitoring registry, under connbeat); nil keeps them private.
	Metrics *monitoring.Registry
	// WrapSource, when set, wraps the opened socket source: the benchmark
	// times the source's reads with it.
	WrapSource func(connections.Source) connections.Source
	// Flows hands over the connections that ended since the last poll
	// (the event capture); with flow_events on, each poll publishes one
	// flow event for each. nil when nothing captures them (capture: poll).
	Flows FlowSource
}

// FlowSource hands over ended connections: Flows appends to dst those
// that ended since its last call; ReadFlows those of them at hand now,
// without waiting for any still on their way (a later call has them).
type FlowSource interface {
	Flows(dst []model.ConnFlow) []model.ConnFlow
	ReadFlows(dst []model.ConnFlow) []model.ConnFlow
}

// captureFlows is the capture's ended connections as a FlowSource, their
// processes joined.
type captureFlows struct{ p *Pipeline }

func (f captureFlows) Flows(dst []model.ConnFlow) []model.ConnFlow { return f.p.Flows(dst) }

func (f captureFlows) ReadFlows(dst []model.ConnFlow) []model.ConnFlow {
	start := len(dst)
	dst = f.p.capture.c.ReadFlows(dst)
	f.p.joinFlows(dst[start:])
	return dst
}

// maxFlowBuffer bounds the flow buffer a pipeline keeps between polls
// (and hands the capture in exchange for its own): a burst larger than
// this is served by a buffer that is dropped after it. The beat loop
// takes flows after each read of the capture's (Ready), which under
// churn is woken once a sixteenth of its ring buffer waits.
const maxFlowBuffer = 4096

// Stats summarise one poll.
type Stats struct {
	Sockets int
	Reports int
	Procs   procs.Stats
	// Flows counts the flow events the poll published.
	Flows int
	// Full says the poll read the socket tables: every poll without the
	// event capture, the first of each aggregation window with it.
	// Sockets counts what the read listed, or on the polls between two
	// full reads the kept listeners and the captured sockets.
	Full bool
	// Captured counts the sockets the event capture added: connections
	// and UDP pairs that opened or closed since the last poll.
	Captured int
	// Unchanged says a full read found the host as the last one left it
	// and used its records again.
	Unchanged bool
}

// Pipeline runs the steps of one poll. It reuses its buffers between polls
// and is not safe for concurrent use.
type Pipeline struct {
	source   connections.Source
	resolver *procs.Resolver // nil when process info is off
	classify *classify.Classifier
	peers    *peers.Linker // nil when process info is off
	// deltaPeers links the reports of the polls between two full reads
	// of the event capture.
	deltaPeers *peers.Linker
	dedup      *dedup.Cache
	events     *event.Builder
	metrics    metrics
	// capture is the event capture; nil when polling only.
	capture *captured
	flows   FlowSource // nil unless flow_events is on and a capture runs

	sockets []model.Socket
	records []model.Record // a full read's
	delta   []model.Record // a poll's between two full reads
	polled  []model.Record // this poll's: records or delta
	// groups are the last published full read's records grouped by
	// dedup key: a full read that finds the host as the last one left it
	// reports them again (see unchanged). fullValid says they hold a
	// whole full read's.
	groups    []model.Report
	fullValid bool
	// lean: the buffers a full read fills are dropped after it, the
	// groups are what stays. Set with the event capture, whose full reads
	// are a window apart.
	lean    bool
	reports []model.Report
	ended   []model.ConnFlow
}

// New opens the socket source and the process join the configuration asks
// for and wires the stages. Close releases what it opened.
func New(opts Options) (*Pipeline, error) {
	cfg := opts.Config
	if opts.Logger == nil {
		opts.Logger = logp.NewNopLogger()
	}
	if opts.Metrics == nil {
		opts.Metrics = monitoring.NewRegistry()
	}
	ev, err := openCapture(cfg, opts.Logger, opts.Metrics)
	if err != nil {
		return nil, err
	}
	src, err := connections.Open(connections.Options{
		Name:       cfg.SocketSource,
		TCPInfo:    cfg.TCPInfo,
		Transports: cfg.Transports(),
		ProcPath:   cfg.ProcPath,
		Logger:     opts.Logger,
		Metrics:    opts.Metrics,

		AllNamespaces: cfg.NetworkNamespaces == config.NamespacesAll,
		// The capture sees what the namespace counters miss: the
		// reconciliation read of a namespace where nothing moved is the
		// last one again (a real read at least every few minutes, and
		// whenever the capture lost something).
		ReuseOwn: ev != nil,
	})
	if err != nil {
		if ev != nil {
			ev.c.Close()
		}
		return nil, err
	}
	if opts.WrapSource != nil {
		src = opts.WrapSource(src)
	}
	p := &Pipeline{
		capture:  ev,
		lean:     ev != nil,
		source:   src,
		classify: classify.New(classify.Options{LocalConnections: cfg.EnableLocalConnections}),
		dedup:    dedup.New(cfg.Aggregation),
		events:   event.NewBuilder(cfg.EventFormat, opts.Host),
		metrics:  newMetrics(opts.Metrics),
	}
	if cfg.FlowEvents {
		p.flows = opts.Flows
		if p.flows == nil && p.capture != nil {
			p.flows = captureFlows{p}
		}
	}
	if cfg.ExposeProcessInfo {
		p.resolver, err = procs.New(procs.Options{Root: cfg.ProcPath, Metadata: cfg.ProcessMetadata()})
		if err != nil {
			p.closeCapture()
			src.Close()
			return nil, fmt.Errorf("process join: %w", err)
		}
		logAccess(cfg.ProcPath, p.resolver, opts.Logger)
		p.peers = peers.New()
		if p.capture != nil {
			p.deltaPeers = peers.New()
		}
	}
	return p, nil
}

// SourceName names the socket source the next poll reads.
func (p *Pipeline) SourceName() string { return p.source.Name() }

// SetLocalIPs replaces the host's addresses in classic events.
func (p *Pipeline) SetLocalIPs(ips []string) { p.events.SetLocalIPs(ips) }

// Capturing reports whether connections come from the event capture
// (connbeat.capture: events, or auto where it loaded).
func (p *Pipeline) Capturing() bool { return p.capture != nil }

// Flows appends the connections that ended since the last call, with
// their counters, to dst; nothing unless the event capture runs and
// connbeat.flow_events is on. Their processes are read from /proc where
// they still run, else what the kernel said; none without
// expose_process_info.
func (p *Pipeline) Flows(dst []model.ConnFlow) []model.ConnFlow {
	if p.capture == nil {
		return dst
	}
	start := len(dst)
	dst = p.capture.c.Flows(dst)
	p.joinFlows(dst[start:])
	return dst
}

// joinFlows sets the processes of flows the capture handed over.
func (p *Pipeline) joinFlows(flows []model.ConnFlow) {
	for i := range flows {
		f := &flows[i]
		switch {
		case f.Process == nil:
		case p.resolver == nil:
			f.Process = nil
		default:
			f.Process = p.capture.process(capture.Owner{PID: f.Process.PID, UID: f.Process.UID, Comm: f.Process.Name}, p.resolver.Lookup)
		}
	}
}

func (p *Pipeline) closeCapture() error {
	if p.capture == nil {
		return nil
	}
	return p.capture.c.Close()
}

// Close releases the socket source, the event capture and the process
// join.
func (p *Pipeline) Close() error {
	err := p.source.Close()
	if cerr := p.closeCapture(); err == nil {
		err = cerr
	}
	if p.resolver != nil {
		if rerr := p.resolver.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// pollKind says what a call of classified is.
type pollKind int

const (
	// pollDue is a poll: a full read when one is due.
	pollDue pollKind = iota
	// pollFull reads the socket tables whatever the capture (Records).
	pollFull
	// pollEarly takes what the capture has read, between two polls.
	pollEarly
)

// Poll reads the sockets once and calls publish for each event to send.
func (p *Pipeline) Poll(ctx context.Context, now time.Time, publish func(beat.Event)) (Stats, error) {
	stats, err := p.classified(ctx, now, pollDue)
	if err == nil {
		err = p.publish(ctx, now, publish, &stats)
	}
	if stats.Full && p.lean {
		p.release()
	}
	// Flows are published even when the socket read failed: the capture
	// holds them apart from the poll, and keeping them would only delay
	// them.
	if p.flows != nil {
		if ferr := p.publishFlows(ctx, now, publish, p.flows.Flows, &stats); err == nil {
			err = ferr
		}
	}
	p.metrics.record(stats, err, p.dedup.Len())
	return stats, err
}

// earlyPollAt is how many connections the capture holds read before
// PublishCaptured runs them through the pipeline ahead of the next poll:
// under churn every buffer from the capture to the output is then sized
// to that many rather than to a poll interval's worth, and on a quiet
// host polls stay the only ones.
const earlyPollAt = 1024

// Ready receives a token when the capture has read flows to publish or
// at least earlyPollAt connections (PublishReadFlows, PublishCaptured);
// nil, never ready, without the capture.
func (p *Pipeline) Ready() <-chan struct{} {
	if p.capture == nil {
		return nil
	}
	return p.capture.c.Ready()
}

// PublishCaptured publishes, ahead of the next poll, the connections the
// capture has read since the last poll when they are many (earlyPollAt
// or more): a poll between two full reads, without waiting for the
// records still on their way (the next poll has them). Called often
// between two polls, it keeps a burst of connections from piling up in
// memory until the poll.
func (p *Pipeline) PublishCaptured(ctx context.Context, now time.Time, publish func(beat.Event)) error {
	if p.capture == nil || p.capture.due(now) || p.capture.c.Pending() < earlyPollAt {
		return nil
	}
	stats, err := p.classified(ctx, now, pollEarly)
	if err == nil {
		err = p.publish(ctx, now, publish, &stats)
	}
	p.metrics.record(stats, err, p.dedup.Len())
	return err
}

// FlowEvents reports whether polls publish flow events: flow_events is on
// and a capture hands over ended connections.
func (p *Pipeline) FlowEvents() bool { return p.flows != nil }

// PublishReadFlows publishes a flow event for each ended connection the
// capture has read since the last poll or call, without waiting for the
// rest (the next call or poll has them). Called often between two polls,
// it keeps a burst of ended connections from piling up in memory until
// the poll, and hands the output an even stream rather than a poll's
// worth at once.
func (p *Pipeline) PublishReadFlows(ctx context.Context, now time.Time, publish func(beat.Event)) error {
	if p.flows == nil {
		return nil
	}
	var stats Stats
	err := p.publishFlows(ctx, now, publish, p.flows.ReadFlows, &stats)
	p.metrics.flows.Add(uint64(stats.Flows))
	return err
}

// publishFlows publishes one event per ended connection take hands over.
func (p *Pipeline) publishFlows(ctx context.Context, now time.Time, publish func(beat.Event), take func([]model.ConnFlow) []model.ConnFlow, stats *Stats) error {
	p.ended = take(p.ended[:0])
	for i := range p.ended {
		if err := ctx.Err(); err != nil {
			return err
		}
		publish(p.events.ConnFlow(&p.ended[i], now))
		stats.Flows++
	}
	if cap(p.ended) > maxFlowBuffer {
		p.ended = nil
	} else {
		clear(p.ended) // drop the processes the flows point to
	}
	return nil
}

// Records reads the sockets once, joins them to their owners and
// classifies them, and returns every record of the poll: what Poll would
// hand to dedup, for a consumer that shows all of a poll's sockets
// (connbeat top). Nothing is published and the dedup window is untouched,
// so Records and Poll are not meant to be mixed on one Pipeline. The slice
// and the values it points to are reused by the next call.
func (p *Pipeline) Records(ctx context.Context) ([]model.Record, Stats, error) {
	stats, err := p.classified(ctx, time.Now(), pollFull)
	p.metrics.record(stats, err, p.dedup.Len())
	if err != nil {
		return nil, stats, err
	}
	return p.polled, stats, nil
}

// classified runs sockets -> procs -> classify into p.polled. With the
// event capture, only the first poll of each aggregation window (or a
// forced one, pollFull) reads the socket tables and scans /proc; the
// others take what the capture saw since the last poll.
func (p *Pipeline) classified(ctx context.Context, now time.Time, kind pollKind) (Stats, error) {
	var stats Stats
	var err error
	forceFull := kind == pollFull
	stats.Full = p.capture == nil || forceFull || (kind == pollDue && p.capture.due(now))
	if !stats.Full {
		p.sockets = p.capture.delta(p.sockets[:0], kind == pollDue)
		stats.Sockets = len(p.sockets)
		stats.Captured = len(p.sockets)
		if kind == pollDue {
			// The polls' job: an early one has no error but the stop's.
			if _, err := p.capture.updateMetrics(); err != nil {
				return stats, fmt.Errorf("reading the capture's counters: %w", err)
			}
		}
	}
	// A full read's records are the next one's to use again only once it
	// finished.
	wasValid := p.fullValid
	if stats.Full {
		p.fullValid = false
		readCtx := ctx
		if p.capture != nil && p.capture.missed() {
			readCtx = connections.FullRead(ctx)
		}
		p.sockets, err = p.source.Sockets(readCtx, p.sockets[:0])
		if err != nil {
			return stats, fmt.Errorf("reading sockets from %s: %w", p.source.Name(), err)
		}
		stats.Sockets = len(p.sockets)
		if p.resolver != nil {
			stats.Procs, err = p.resolver.Refresh(ctx, p.sockets)
			if err != nil {
				return stats, fmt.Errorf("joining sockets to processes: %w", err)
			}
		}
		if p.capture != nil {
			p.sockets, err = p.capture.full(now, p.sockets)
			if err != nil {
				return stats, fmt.Errorf("reconciling the event capture: %w", err)
			}
			stats.Captured = len(p.sockets) - stats.Sockets
		}
	}
	var owner classify.OwnerFunc
	if p.resolver != nil {
		owner = p.resolver.Owner
		if p.capture != nil {
			owner = p.captureOwner
		}
	}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	if !stats.Full {
		p.delta = p.classify.Classify(p.sockets, owner, p.delta[:0])
		p.polled = p.delta
		return stats, nil
	}
	if wasValid && !forceFull && p.unchanged(&stats) {
		stats.Unchanged, p.fullValid = true, true
		p.polled = nil
		return stats, nil
	}
	p.records = p.classify.Classify(p.sockets, owner, p.records[:0])
	if p.peers != nil {
		p.peers.Link(p.records)
	}
	if p.capture != nil {
		p.capture.seedListeners(p.records)
	}
	p.polled = p.records
	return stats, nil
}

// release drops the buffers a full read filled, sized to every socket of
// the host: with the event capture the next full read is a window away,
// and an idle agent should hold no more than it needs between two.
func (p *Pipeline) release() {
	p.sockets, p.records, p.polled, p.reports = nil, nil, nil, nil
	p.dedup.Release()
	if p.capture != nil {
		p.capture.release()
	}
	if p.peers != nil {
		p.peers.Release()
	}
}

// unchanged reports whether a full read found the host as the last full
// read left it: the source listed the same sockets, the process join
// found the same owners, and the capture added nothing. Its records, with
// their processes and peers, are then the last ones again, and so are
// their groups: on an idle host a full read costs the reads and no more.
func (p *Pipeline) unchanged(stats *Stats) bool {
	switch {
	case !connections.Unchanged(p.source):
		return false
	case p.resolver != nil && !stats.Procs.Unchanged:
		return false
	case p.capture != nil && (stats.Captured != 0 || len(p.capture.owners) != 0):
		return false
	}
	return true
}

// captureOwner is the owner join with the event capture: a captured
// socket's process is the one the kernel attributed it to.
func (p *Pipeline) captureOwner(ino uint64) (*model.Process, int) {
	if ino&captureBit == 0 {
		return p.resolver.Owner(ino)
	}
	i := ino &^ captureBit
	if i >= uint64(len(p.capture.owners)) {
		return nil, 0
	}
	return p.capture.process(p.capture.owners[i], p.resolver.Lookup), 1
}

// publish runs the poll's records (or, on an unchanged host, the last full
// read's groups) through dedup and publishes an event per report.
func (p *Pipeline) publish(ctx context.Context, now time.Time, publish func(beat.Event), stats *Stats) error {
	window := now
	if p.capture != nil {
		// With the event capture the windows are fixed, each starting at
		// a full read: a key is reported once in every window in which
		// one of its sockets existed. A sliding window would let a key
		// first reported between two full reads, whose socket only the
		// full reads list later, go unreported for up to two windows.
		window = p.capture.lastFull
	}
	switch {
	case stats.Unchanged:
		p.reports = p.dedup.FilterGroups(p.groups, window, p.reports[:0])
	case stats.Full:
		p.reports = p.dedup.Filter(p.polled, window, p.reports[:0])
		p.groups = p.dedup.Grouped(p.polled, p.groups[:0])
		p.fullValid = true
	default:
		p.reports = p.dedup.Filter(p.polled, window, p.reports[:0])
		if p.deltaPeers != nil {
			// Between two full reads: the peers of what is reported only.
			p.deltaPeers.LinkReports(p.reports, p.polled)
		}
	}
	stats.Reports = len(p.reports)
	if p.resolver != nil {
		// A process may have exec'd another program since its details
		// were read: what is sent says what runs now.
		for i := range p.reports {
			p.reports[i].Process = p.resolver.Current(p.reports[i].Process)
			p.reports[i].Peer = p.resolver.Current(p.reports[i].Peer)
		}
	}
	for i := range p.reports {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		publish(p.events.Build(&p.reports[i], now))
	}
	return nil
}

// logAccess says once which processes the join cannot read, and whether
// the kernel gives the cheap fd-count signal.
func logAccess(procPath string, r *procs.Resolver, logger *logp.Logger) {
	access, err := procs.SelfAccess(procPath)
	if err != nil {
		logger.Warnf("cannot tell which processes are readable: %v", err)
	} else if msg := access.Explain(); msg != "" {
		logger.Warn(msg)
	}
	if !r.FDCountSignal() {
		logger.Info("kernel does not report fd counts in /proc/PID/fd (Linux < 6.2): new sockets are found by a scan of their uid's processes")
	}
}
