package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// printTables prints the churn and idle tables as the Markdown of
// docs/performance.md.
func printTables(w io.Writer, f flags, churn []churnRow, mbChurn []metricbeatChurn, idle []idleResult) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "load average at the end: %s\n\n", strings.Join(strings.Fields(string(load))[:3], " "))
	if len(churn) > 0 {
		fmt.Fprintf(w, "Churn: loopback connections (connect, %d bytes, close) for %s from %d client processes.\n\n", payload, f.duration, f.clients)
		fmt.Fprintln(w, "| rate asked /s | capture (ran) | connections made | rate made /s | flows received, client ends | flows received, server ends | capture lost | connbeat CPU per 1,000 connections, default events | same, flow_events | workload CPU alone | workload CPU with connbeat (default) | connbeat private RSS, default events | same, flow_events |")
		fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range churn {
			if r.Err != "" {
				fmt.Fprintf(w, "| %d | %s (%s) | %s |\n", r.Rate, r.Capture, r.Ran, "failed: "+oneLine(r.Err))
				continue
			}
			flowsOut, flowsIn, lost, flowCPU, anon := "n/a (no flows when polling)", "n/a", "n/a", "n/a", "n/a"
			if r.Flows.Made > 0 {
				flowsOut = share(r.FlowsOut, r.Flows.Made)
				flowsIn = share(r.FlowsIn, r.Flows.Made)
				lost = fmt.Sprintf("%.0f", r.Lost)
				flowCPU = perThousand(r.FlowsCPU, r.Flows.Made)
				anon = fmt.Sprintf("%.1f MB", r.AnonMB)
			}
			fmt.Fprintf(w, "| %d | %s (%s) | %d | %.0f | %s | %s | %s | %s | %s | %d ms | %d ms | %.1f MB | %s |\n",
				r.Rate, r.Capture, r.Ran, r.Default.Made, float64(r.Default.Made)/r.Default.Seconds,
				flowsOut, flowsIn, lost, perThousand(r.DefaultCPU, r.Default.Made), flowCPU,
				r.Alone.CPU.Milliseconds(), r.Default.CPU.Milliseconds(), r.DefaultAnonMB, anon)
		}
		fmt.Fprintln(w)
	}
	if len(mbChurn) > 0 {
		fmt.Fprintln(w, "The same churn with Elastic's Metricbeat system/socket instead of connbeat (period 1 s, events discarded): what a user would otherwise run. It polls, so it sees no flows and misses the connections that open and close between two polls.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| rate asked /s | connections made | Metricbeat CPU per 1,000 connections | Metricbeat private RSS |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|")
		for _, r := range mbChurn {
			if r.Err != "" {
				fmt.Fprintf(w, "| %d | failed: %s |\n", r.Rate, oneLine(r.Err))
				continue
			}
			fmt.Fprintf(w, "| %d | %d | %s | %.1f MB |\n", r.Rate, r.Made, perThousand(r.CPU, r.Made), r.AnonMB)
		}
		fmt.Fprintln(w)
	}
	if len(idle) > 0 {
		fmt.Fprintf(w, "Idle: %d idle loopback sockets held by child processes; CPU over %d windows of %s, one after the other, after %s of settling.\n\n", f.idle, f.idleWindows, f.idleWindow, f.idleSettle)
		fmt.Fprintln(w, "| agent | settings | capture (ran) | CPU a window (median) | each window | CPU a second | % of a core | private RSS |")
		fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|")
		for _, r := range idle {
			if r.Err != "" {
				fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.Agent, r.Settings, r.Mode, oneLine(r.Err))
				continue
			}
			perSec := time.Duration(float64(r.CPU) / r.Seconds)
			each := make([]string, len(r.Windows))
			for i, d := range r.Windows {
				each[i] = fmt.Sprint(d.Milliseconds())
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d ms | %s ms | %.1f ms | %.2f%% | %.1f MB |\n",
				r.Agent, r.Settings, r.Mode, r.CPU.Milliseconds(), strings.Join(each, ", "), float64(perSec.Microseconds())/1000,
				100*r.CPU.Seconds()/r.Seconds, r.AnonMB)
		}
	}
}

func share(got, made int) string {
	if made == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.2f%%)", got, 100*float64(got)/float64(made))
}

func perThousand(cpu time.Duration, made int) string {
	if made == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f ms", float64(cpu.Microseconds())/1000/(float64(made)/1000))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
