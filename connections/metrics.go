package connections

import (
	"context"

	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/model"
)

// metrics are the socket sources' counters in libbeat's monitoring
// registry, under socket_source: one set per source that has read a poll,
// and auto's switches between them.
type metrics struct {
	reg      *monitoring.Registry
	switches *monitoring.Uint
	leaves   map[string]*leafMetrics
}

// leafMetrics count one source's polls.
type leafMetrics struct {
	polls, errors *monitoring.Uint
	// sockets is the last successful poll's count.
	sockets *monitoring.Int
	// anomalies counts what the source read but could not use: netlink
	// dumps the kernel flagged as interrupted (and read again), bpf
	// records that did not decode.
	anomalies *monitoring.Uint
}

func newMetrics(reg *monitoring.Registry) *metrics {
	if reg == nil {
		reg = monitoring.NewRegistry()
	}
	reg = reg.GetOrCreateRegistry("socket_source")
	return &metrics{
		reg:      reg,
		switches: monitoring.NewUint(reg, "switches"),
		leaves:   map[string]*leafMetrics{},
	}
}

func (m *metrics) leaf(name string) *leafMetrics {
	if l, ok := m.leaves[name]; ok {
		return l
	}
	r := m.reg.GetOrCreateRegistry(name)
	l := &leafMetrics{
		polls:     monitoring.NewUint(r, "polls"),
		errors:    monitoring.NewUint(r, "errors"),
		sockets:   monitoring.NewInt(r, "sockets"),
		anomalies: monitoring.NewUint(r, "anomalies"),
	}
	m.leaves[name] = l
	return l
}

// counted counts one source's polls, errors and anomalies.
type counted struct {
	Source
	m *leafMetrics
}

// anomalous is implemented by sources that count what they read but could
// not use in their last poll.
type anomalous interface{ Anomalies() int }

func (m *metrics) count(src Source) Source {
	return &counted{Source: src, m: m.leaf(src.Name())}
}

// Unchanged implements unchangedReporter.
func (c *counted) Unchanged() bool { return Unchanged(c.Source) }

func (c *counted) forget() { forget(c.Source) }

// Sockets implements Source.
func (c *counted) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	start := len(dst)
	out, err := c.Source.Sockets(ctx, dst)
	c.m.polls.Inc()
	if a, ok := c.Source.(anomalous); ok {
		c.m.anomalies.Add(uint64(a.Anomalies()))
	}
	if err != nil {
		if ctx.Err() == nil {
			c.m.errors.Inc()
		}
		return out, err
	}
	c.m.sockets.Set(int64(len(out) - start))
	return out, nil
}
