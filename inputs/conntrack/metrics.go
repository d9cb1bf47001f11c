package conntrack

import (
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/model"
)

// metrics are the input's counters in libbeat's monitoring registry, under
// conntrack: what the kernel sent, what it dropped, what re-syncs made up.
type metrics struct {
	events                   map[model.FlowEvent]*monitoring.Uint
	enobufs, lost            *monitoring.Uint
	resyncs                  *monitoring.Uint
	resyncNew, resyncDestroy *monitoring.Uint
	// superseded counts the kernel's NEWs read after a re-sync had
	// reported their entry (created while the dump ran): not reported
	// again, so resync.new - superseded events stand for lost ones.
	superseded           *monitoring.Uint
	decodeErrors, joined *monitoring.Uint
	// Gauges: entries remembered now, and forgotten to stay in bounds.
	tracked, evicted *monitoring.Int
}

// newMetrics registers the counters in reg (nil: a private registry).
func newMetrics(reg *monitoring.Registry) metrics {
	if reg == nil {
		reg = monitoring.NewRegistry()
	}
	reg = reg.GetOrCreateRegistry("conntrack")
	return metrics{
		events: map[model.FlowEvent]*monitoring.Uint{
			model.FlowNew:     monitoring.NewUint(reg, "events.new"),
			model.FlowUpdate:  monitoring.NewUint(reg, "events.update"),
			model.FlowDestroy: monitoring.NewUint(reg, "events.destroy"),
		},
		enobufs:       monitoring.NewUint(reg, "enobufs"),
		lost:          monitoring.NewUint(reg, "lost"),
		resyncs:       monitoring.NewUint(reg, "resyncs"),
		resyncNew:     monitoring.NewUint(reg, "resync.new"),
		resyncDestroy: monitoring.NewUint(reg, "resync.destroy"),
		superseded:    monitoring.NewUint(reg, "resync.superseded"),
		decodeErrors:  monitoring.NewUint(reg, "decode_errors"),
		joined:        monitoring.NewUint(reg, "joined"),
		tracked:       monitoring.NewInt(reg, "tracked"),
		evicted:       monitoring.NewInt(reg, "evicted"),
	}
}

// count counts one event received from the kernel.
func (m metrics) count(e model.FlowEvent) {
	if c := m.events[e]; c != nil {
		c.Inc()
	}
}
