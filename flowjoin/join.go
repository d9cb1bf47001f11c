// Package flowjoin tells, for conntrack flows, which end is a socket of
// this host and which process holds it: the end's addresses are looked up
// with sock_diag (one exact request, no dump) and the socket's inode is
// joined to its process by procs.Resolver.
package flowjoin

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/procs"
)

const (
	// minRefreshGap is the least time between two reads of the process
	// table.
	minRefreshGap = 100 * time.Millisecond
	// maxRefreshGap bounds how long a batch of flows waits for the next
	// read: the reader goroutine of the input queues events meanwhile.
	maxRefreshGap = 2 * time.Second
	// refreshShare bounds the share of time refreshes take: after a
	// refresh that took d, the next waits refreshShare*d (within the gaps
	// above), so that a host with many processes costs latency, not CPU.
	refreshShare = 10
)

// Options configure a Joiner.
type Options struct {
	// Processes joins sockets to processes; without it only the
	// direction is set.
	Processes bool
	// ProcPath and Metadata configure the process join as for polls.
	ProcPath string
	Metadata procs.MetadataOptions
	Logger   *logp.Logger
	// Metrics is the registry the join's counters go in (nil: private).
	Metrics *monitoring.Registry

	// localAddrs replaces the host's addresses in tests.
	localAddrs func() ([]netip.Addr, error)
}

// Joiner joins flows. It is not safe for concurrent use.
type Joiner struct {
	log      *logp.Logger
	locals   *locals
	lookup   *netlink.Lookup // nil without Processes
	resolver *procs.Resolver // nil without Processes
	m        metrics

	lastRefresh time.Time
	refreshGap  time.Duration
	lookupErr   bool // a lookup error was logged

	pending []pendingEnd
	sockets []model.Socket
}

// pendingEnd is a flow whose local socket is known but not yet its owner.
type pendingEnd struct {
	flow  *model.Flow
	inode uint64
}

// New opens the sock_diag socket and the process join.
func New(opts Options) (*Joiner, error) {
	if opts.Logger == nil {
		opts.Logger = logp.NewNopLogger()
	}
	if opts.localAddrs == nil {
		opts.localAddrs = interfaceAddrs
	}
	j := &Joiner{log: opts.Logger, locals: newLocals(opts.localAddrs), m: newMetrics(opts.Metrics), refreshGap: minRefreshGap}
	if !opts.Processes {
		return j, nil
	}
	var err error
	if j.lookup, err = netlink.OpenLookup(); err != nil {
		return nil, fmt.Errorf("conntrack process join: %w", err)
	}
	j.resolver, err = procs.New(procs.Options{Root: opts.ProcPath, Metadata: opts.Metadata})
	if err != nil {
		j.lookup.Close()
		return nil, fmt.Errorf("conntrack process join: %w", err)
	}
	return j, nil
}

// Close releases the sockets and the proc handle.
func (j *Joiner) Close() error {
	if j.resolver == nil {
		return nil
	}
	err := j.lookup.Close()
	if rerr := j.resolver.Close(); err == nil {
		err = rerr
	}
	return err
}

// Join sets each flow's Direction (Outbound when its original source is
// a local address, Inbound when its reply source is, Forwarded
// otherwise) and Process: the owner of the local socket at that end,
// looked up by the addresses the socket itself has (for an inbound
// flow, the listener when the connection has no socket of its own yet).
func (j *Joiner) Join(ctx context.Context, flows []*model.Flow) {
	j.locals.refresh(j.log)
	j.pending, j.sockets = j.pending[:0], j.sockets[:0]
	for _, f := range flows {
		f.Process = nil
		switch {
		case j.locals.has(f.Original.Src):
			f.Direction = model.Outbound
		case j.locals.has(f.Reply.Src):
			f.Direction = model.Inbound
		default:
			f.Direction = model.Forwarded
			continue
		}
		if j.resolver == nil {
			continue
		}
		if s, ok := j.localSocket(f); ok {
			j.pending = append(j.pending, pendingEnd{flow: f, inode: s.Inode})
			j.sockets = append(j.sockets, s)
		}
	}
	if len(j.pending) == 0 {
		return
	}
	unknown := 0
	for _, p := range j.pending {
		if p.flow.Process, _ = j.resolver.Owner(p.inode); p.flow.Process == nil {
			unknown++
		}
	}
	if unknown > 0 && j.refresh(ctx) {
		for _, p := range j.pending {
			if p.flow.Process == nil {
				p.flow.Process, _ = j.resolver.Owner(p.inode)
			}
		}
	}
	for _, p := range j.pending {
		if p.flow.Process == nil {
			j.m.unowned.Inc()
		}
	}
}

// localSocket finds the socket at the flow's local end: the originating
// socket sees the flow's original tuple (its peer is the address it
// connected to, before any DNAT), the answering one the reply tuple (its
// peer the source after any SNAT).
func (j *Joiner) localSocket(f *model.Flow) (model.Socket, bool) {
	t := f.Original
	if f.Direction == model.Inbound {
		t = f.Reply
	}
	if t.Proto != 6 && t.Proto != 17 {
		return model.Socket{}, false
	}
	local := netip.AddrPortFrom(t.Src, t.SrcPort)
	s, ok := j.find(t.Proto, local, netip.AddrPortFrom(t.Dst, t.DstPort))
	if f.Direction == model.Inbound && t.Proto == 6 && (!ok || s.Inode == 0) {
		// Not accepted yet (or gone): the listener that took it.
		var any netip.Addr
		if t.Src.Is4() {
			any = netip.IPv4Unspecified()
		} else {
			any = netip.IPv6Unspecified()
		}
		s, ok = j.find(t.Proto, local, netip.AddrPortFrom(any, 0))
	}
	return s, ok && s.Inode != 0
}

func (j *Joiner) find(proto uint8, local, remote netip.AddrPort) (model.Socket, bool) {
	j.m.lookups.Inc()
	s, ok, err := j.lookup.Find(proto, local, remote)
	if err != nil {
		j.m.lookupErrors.Inc()
		if !j.lookupErr {
			j.log.Warnf("conntrack: looking up the local socket of a flow failed (flows go without a process while it does; counted in connbeat.conntrack.join.lookup_errors): %v", err)
			j.lookupErr = true
		}
		return s, false
	}
	return s, ok
}

// refresh reads the process table again once the gap after the last read
// has passed; it reports whether it did.
func (j *Joiner) refresh(ctx context.Context) bool {
	if wait := j.refreshGap - time.Since(j.lastRefresh); wait > 0 {
		j.m.refreshWaits.Inc()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	start := time.Now()
	_, err := j.resolver.Refresh(ctx, j.sockets)
	cost := time.Since(start)
	j.lastRefresh = time.Now()
	j.refreshGap = min(maxRefreshGap, max(minRefreshGap, refreshShare*cost))
	j.m.refreshes.Inc()
	if err != nil {
		j.log.Debugf("conntrack: reading the process table: %v", err)
		return false
	}
	return true
}
