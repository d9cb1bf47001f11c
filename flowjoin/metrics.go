package flowjoin

import "github.com/elastic/elastic-agent-libs/monitoring"

// metrics count the join's work, under conntrack.join in libbeat's
// monitoring registry.
type metrics struct {
	lookups, lookupErrors *monitoring.Uint
	// refreshWaits counts batches that waited for the gap after the last
	// read of the process table.
	refreshes, refreshWaits *monitoring.Uint
	// unowned counts local sockets whose process was not found (gone
	// before the refresh, or another user's without the capabilities).
	unowned *monitoring.Uint
}

func newMetrics(reg *monitoring.Registry) metrics {
	if reg == nil {
		reg = monitoring.NewRegistry()
	}
	reg = reg.GetOrCreateRegistry("conntrack").GetOrCreateRegistry("join")
	return metrics{
		lookups:      monitoring.NewUint(reg, "lookups"),
		lookupErrors: monitoring.NewUint(reg, "lookup_errors"),
		refreshes:    monitoring.NewUint(reg, "refreshes"),
		refreshWaits: monitoring.NewUint(reg, "refresh_waits"),
		unowned:      monitoring.NewUint(reg, "unowned"),
	}
}
