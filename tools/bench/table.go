package main

import (
	"fmt"
	"io"
	"strings"
)

// printTable writes every row as one Markdown table. CPU ratios compare
// with `ss -tanp` on the same workload: how many times less CPU a warm poll
// costs than ss listing the sockets with their processes.
func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| connections | sockets | reader | cold wall ms | cold CPU ms | cold allocs | warm wall ms | warm CPU ms | warm allocs | RSS MB | ss -tanp CPU / this CPU |")
	fmt.Fprintln(w, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		var ssp float64
		for _, s := range r.SS {
			if s.Args == "ss -tanp" {
				ssp = s.CPUMS
			}
		}
		ratio := func(cpu float64) string {
			if cpu <= 0 || ssp <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.1fx", ssp/cpu)
		}
		for _, s := range r.Sources {
			fmt.Fprintf(w, "| %d | %d | connbeat %s (poll, join, dedup) | %.1f | %.1f | %d | %.1f | %.1f | %d | %.0f | %s |\n",
				r.Conns, s.Sockets, s.Source, s.Cold.WallMS, s.Cold.CPUMS, s.Cold.Allocs,
				s.Warm.WallMS, s.Warm.CPUMS, s.Warm.Allocs, s.HWMMB, ratio(s.Warm.CPUMS))
		}
		for _, s := range r.SS {
			if s.Err != "" {
				fmt.Fprintf(w, "| %d | %d | `%s` | failed: %s |||||||||\n", r.Conns, r.Sockets, s.Args, s.Err)
				continue
			}
			fmt.Fprintf(w, "| %d | %d | `%s` | | | | %.1f | %.1f | | | %s |\n",
				r.Conns, r.Sockets, s.Args, s.WallMS, s.CPUMS, ratio(s.CPUMS))
		}
		if a := r.Agent; a != nil {
			if a.Err != "" {
				fmt.Fprintf(w, "| %d | %d | connbeat agent | failed: %s |||||||||\n", r.Conns, r.Sockets, a.Err)
				continue
			}
			perPoll := a.CPUPercent / 100 * a.Interval.Seconds() * 1000
			fmt.Fprintf(w, "| %d | %d | connbeat agent, %s interval: %.2f%% of a core over %.0f s | | | | | %.1f | | %.0f | %s |\n",
				r.Conns, r.Sockets, a.Interval, a.CPUPercent, a.Seconds, perPoll, a.RSSMB, ratio(perPoll))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, strings.TrimSpace(`
Cold: the first poll of a fresh process (every fd table read, process metadata read once).
Warm: the median of the following polls, nothing changed. CPU is user+system time of the
whole process (GC included); allocs are heap allocations per poll; RSS is the measuring
process's peak. ss rows: the ss child's wall and CPU time, output to /dev/null. The agent
row is the built binary (discard output): CPU per poll derived from its steady CPU share.`))
}
