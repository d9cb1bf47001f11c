package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// printTable prints the rows as the Markdown table of docs/performance.md.
func printTable(w io.Writer, f flags, rows []row) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "%d entries created and deleted through ctnetlink per row (%d events), %d open at once, %d generators; load average at the end: %s\n\n",
		f.entries, 2*f.entries, f.window, f.generators, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintln(w, "| rate asked, events/s | rate generated, events/s | generated | connbeat wrote | of which re-synced | connbeat lost (kernel drops, counted) | missing from connbeat's file | `conntrack -E` printed | `conntrack -E` missing | connbeat CPU per 100,000 events |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		enobufs := ""
		if r.ConntrackENOBUFS {
			enobufs = " (ENOBUFS)"
		}
		fmt.Fprintf(w, "| %s | %.0f | %d | %d | %d | %d | %d | %d | %d%s | %d ms |\n",
			rateName(r.Target), r.Rate, r.Generated, r.Written, r.Resynced, r.Lost, r.Generated-r.Written,
			r.ConntrackPrinted, r.Generated-r.ConntrackPrinted, enobufs, r.CPUPer100k.Milliseconds())
	}
}
