package flowjoin

import "github.com/elastic/elastic-agent-libs/monitoring"

// metrics count the join's work, under conntrack.join in libbeat's
// monitoring registry.
type metrics struct {
	lookups, lookupErrors       *monitoring.Uint
	refreshes, refreshesSkipped *monitoring.Uint
	// unowned counts local sockets whose process was not found (gone
	// before the refresh, another user's without the capabilities, or a
	// refresh skipped to stay within its budget).
	unowned *monitoring.Uint
}

func newMetrics(reg *monitoring.Registry) metrics {
	if reg == nil {
		reg = monitoring.NewRegistry()
	}
	reg = reg.GetOrCreateRegistry("conntrack").GetOrCreateRegistry("join")
	return metrics{
		lookups:          monitoring.NewUint(reg, "lookups"),
		lookupErrors:     monitoring.NewUint(reg, "lookup_errors"),
		refreshes:        monitoring.NewUint(reg, "refreshes"),
		refreshesSkipped: monitoring.NewUint(reg, "refreshes_skipped"),
		unowned:          monitoring.NewUint(reg, "unowned"),
	}
}
