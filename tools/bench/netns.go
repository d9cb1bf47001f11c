package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/workload"
)

// nsRow is one source measured on the same connections held by the same
// processes, once all in one network namespace and once each process in
// a namespace of its own.
type nsRow struct {
	Namespaces int
	Processes  int
	Conns      int
	Result     sourceResult
}

// runNetns measures the namespace comparison: conns connections over
// procs processes (each with the same share, fds and listeners), first
// in the agent's namespace, then each process in a new one, so that only
// the number of namespaces differs.
func runNetns(ctx context.Context, f flags) ([]nsRow, error) {
	procs, conns := f.netns, f.netnsConns
	per := (conns + procs - 1) / procs
	var rows []nsRow
	for _, spread := range []bool{false, true} {
		namespaces := 1
		if spread {
			namespaces = procs + 1 // and the agent's own
		}
		fmt.Fprintf(os.Stderr, "bench: %d connections, %d processes, %d namespaces...\n", conns, procs, namespaces)
		w, err := workload.Start(ctx, workload.Options{Conns: conns, PerProcess: per, NetnsPerProcess: spread})
		if err != nil {
			return rows, err
		}
		time.Sleep(time.Second)
		// Profiles of the two cases side by side: PREFIX.nsN.SOURCE.
		for _, env := range []string{cpuProfileEnv, heapProfileEnv} {
			if f.profile[env] != "" {
				os.Setenv(env, fmt.Sprintf("%s.ns%d", f.profile[env], namespaces))
			}
		}
		for _, src := range f.netnsSources {
			res, err := measureChild(ctx, src, f.warm)
			if err == nil && res.Err != "" {
				err = fmt.Errorf("%s: %s", src, res.Err)
			}
			if err != nil {
				w.Stop()
				return rows, err
			}
			res.Source = src
			rows = append(rows, nsRow{Namespaces: namespaces, Processes: len(w.PIDs()), Conns: conns, Result: res})
		}
		w.Stop()
	}
	return rows, nil
}

// printNetnsTable writes the namespace comparison, each source's warm
// poll against its own one-namespace poll.
func printNetnsTable(w io.Writer, rows []nsRow) {
	fmt.Fprintln(w, "| namespaces | processes | connections | sockets | reader | warm wall ms | warm CPU ms | source CPU ms | warm allocs | RSS MB | warm CPU / one namespace's |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
	single := map[string]float64{}
	for _, r := range rows {
		s := r.Result
		ratio := "1.0x"
		if r.Namespaces == 1 {
			single[s.Source] = s.Warm.CPUMS
		} else if base := single[s.Source]; base > 0 {
			ratio = fmt.Sprintf("%.2fx", s.Warm.CPUMS/base)
		} else {
			ratio = "-"
		}
		fmt.Fprintf(w, "| %d | %d | %d | %d | connbeat %s | %.1f | %.1f | %.1f | %d | %.0f | %s |\n",
			r.Namespaces, r.Processes, r.Conns, s.Sockets, s.Source, s.Warm.WallMS, s.Warm.CPUMS, s.Warm.SourceCPUMS, s.Warm.Allocs, s.HWMMB, ratio)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, strings.TrimSpace(`
The same connections, processes and fds in both cases: in one namespace (the agent's),
then each process in a network namespace of its own. Warm: median of the warm polls of
the whole pipeline (every namespace listed, each read, the join, classify, dedup);
source CPU: the socket source's share of it.`))
}
