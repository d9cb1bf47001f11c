package pipeline

import (
	"context"
	"errors"

	"github.com/elastic/elastic-agent-libs/monitoring"
)

// metrics are the pipeline's counters in libbeat's monitoring registry, so
// that GET /stats and the periodic metrics log show what each poll saw.
type metrics struct {
	polls, pollErrors, reports, flows, fdTablesRead *monitoring.Uint
	// fullReads counts the polls that read the socket tables, unchanged
	// those of them that found the host as the last one left it.
	fullReads, unchanged *monitoring.Uint
	// Gauges: the last poll's figures.
	sockets, processes, denied, unresolved, dedupKeys *monitoring.Int
}

func newMetrics(reg *monitoring.Registry) metrics {
	return metrics{
		polls:        monitoring.NewUint(reg, "polls"),
		pollErrors:   monitoring.NewUint(reg, "poll_errors"),
		reports:      monitoring.NewUint(reg, "reports"),
		flows:        monitoring.NewUint(reg, "flow_events"),
		fdTablesRead: monitoring.NewUint(reg, "procs.fd_tables_read"),
		fullReads:    monitoring.NewUint(reg, "full_reads"),
		unchanged:    monitoring.NewUint(reg, "full_reads_unchanged"),
		sockets:      monitoring.NewInt(reg, "sockets"),
		processes:    monitoring.NewInt(reg, "procs.processes"),
		denied:       monitoring.NewInt(reg, "procs.denied"),
		unresolved:   monitoring.NewInt(reg, "procs.unresolved"),
		dedupKeys:    monitoring.NewInt(reg, "dedup.keys"),
	}
}

func (m metrics) record(s Stats, err error, keys int) {
	m.polls.Inc()
	m.flows.Add(uint64(s.Flows))
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			m.pollErrors.Inc()
		}
		return
	}
	m.reports.Add(uint64(s.Reports))
	m.dedupKeys.Set(int64(keys))
	if !s.Full {
		// Between the event capture's full reads the gauges keep what
		// the last one found: the host's sockets and processes.
		return
	}
	m.fullReads.Inc()
	if s.Unchanged {
		m.unchanged.Inc()
	}
	m.fdTablesRead.Add(uint64(s.Procs.Rescanned))
	m.sockets.Set(int64(s.Sockets))
	m.processes.Set(int64(s.Procs.Processes))
	m.denied.Set(int64(s.Procs.Denied))
	m.unresolved.Set(int64(s.Procs.Unresolved))
}
