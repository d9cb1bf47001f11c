// Command bench measures connbeat's poll against a real workload of idle
// loopback connections held by child processes, for each socket source,
// and `ss` on the same workload in the same run, and prints one table.
// `make bench` runs it; it needs root to join every process's sockets.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/internal/testkit/child"
	"github.com/connbeat/connbeat/internal/testkit/workload"
)

// measureHelper is a measurement child for one source: its arguments are
// the source and the number of warm polls; it prints a sourceResult.
var measureHelper = child.Helper{Name: "bench-measure", Main: func(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want a source and a number of warm polls, got %q", args)
	}
	warm, err := strconv.Atoi(args[1])
	if err != nil {
		return fmt.Errorf("warm polls: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(measure(args[0], warm))
}}

type flags struct {
	conns           []int
	sources         []string
	warm            int
	ssRuns          int
	agent           string
	agentSource     string
	agentInterval   time.Duration
	agentWindow     time.Duration
	agentAt         int
	jsonOut         string
	netns           int
	netnsConns      int
	netnsSources    []string
	netnsChildEhash int
	// profile holds the profile prefixes by their environment variable.
	profile map[string]string
}

// row is one size of workload and everything measured on it.
type row struct {
	Conns   int
	Sockets int // sockets on the host during the run, as netlink saw them
	Sources []sourceResult
	SS      []ssResult
	Agent   *agentResult `json:",omitempty"`
}

func main() {
	child.Serve(workload.Helper(), measureHelper)
	f := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: not root: other users' processes cannot be joined, the numbers would flatter connbeat")
	}
	var rows []row
	for _, n := range f.conns {
		r, err := runSize(ctx, f, n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %d connections: %v\n", n, err)
			os.Exit(1)
		}
		rows = append(rows, r)
	}
	if len(rows) > 0 {
		printTable(os.Stdout, rows)
	}
	var nsRows []nsRow
	if f.netns > 0 {
		var err error
		if nsRows, err = runNetns(ctx, f); err != nil {
			fmt.Fprintf(os.Stderr, "bench: namespaces: %v\n", err)
			os.Exit(1)
		}
		fmt.Println()
		printNetnsTable(os.Stdout, nsRows)
	}
	if f.jsonOut != "" {
		raw, _ := json.MarshalIndent(struct {
			Rows       []row
			Namespaces []nsRow `json:",omitempty"`
		}{rows, nsRows}, "", "  ")
		if err := os.WriteFile(f.jsonOut, raw, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
}

func parseFlags() flags {
	var f flags
	conns := flag.String("n", "1000,10000,40000", "connection counts (each is 2 established sockets)")
	sources := flag.String("sources", "procfs,netlink,netlink+tcp_info,bpf", "sources to measure")
	flag.IntVar(&f.warm, "warm", 15, "warm polls per source (the median is reported)")
	flag.IntVar(&f.ssRuns, "ss-runs", 3, "runs of each ss command (the median is reported)")
	flag.StringVar(&f.agent, "agent", "", "built connbeat binary to measure steady CPU and RSS with (empty: skip)")
	flag.StringVar(&f.agentSource, "agent-source", "auto", "socket_source of the agent run")
	flag.DurationVar(&f.agentInterval, "agent-interval", 2*time.Second, "poll_interval of the agent run")
	flag.DurationVar(&f.agentWindow, "agent-window", 30*time.Second, "how long the agent's steady CPU is measured")
	flag.IntVar(&f.agentAt, "agent-at", 0, "run the agent only at this connection count (0: at every count)")
	flag.StringVar(&f.jsonOut, "json", "", "also write the raw results to this file")
	flag.IntVar(&f.netns, "netns", 0, "also compare N processes in N network namespaces with the same N processes in one (0: skip)")
	flag.IntVar(&f.netnsConns, "netns-conns", 40000, "connections of the namespace comparison")
	flag.IntVar(&f.netnsChildEhash, "netns-child-ehash", 0, "set net.ipv4.tcp_child_ehash_entries for the namespace comparison's namespaces (0: leave it)")
	netnsSources := flag.String("netns-sources", "netlink,bpf", "sources of the namespace comparison")
	heap := flag.String("heapprofile", "", "file prefix: each measurement writes its heap profile to PREFIX.SOURCE after its polls")
	cpu := flag.String("cpuprofile", "", "file prefix: each measurement writes the CPU profile of its warm polls to PREFIX.SOURCE")
	flag.Parse()
	for _, s := range strings.Split(*conns, ",") {
		if strings.TrimSpace(s) == "" {
			continue // -n '' measures only the namespace comparison
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "bench: -n: %q is not a count\n", s)
			os.Exit(2)
		}
		f.conns = append(f.conns, n)
	}
	f.sources = strings.Split(*sources, ",")
	f.netnsSources = strings.Split(*netnsSources, ",")
	f.profile = map[string]string{heapProfileEnv: *heap, cpuProfileEnv: *cpu}
	if *heap != "" {
		os.Setenv(heapProfileEnv, *heap)
	}
	if *cpu != "" {
		os.Setenv(cpuProfileEnv, *cpu)
	}
	return f
}

func runSize(ctx context.Context, f flags, n int) (row, error) {
	r := row{Conns: n}
	fmt.Fprintf(os.Stderr, "bench: starting %d connections...\n", n)
	w, err := workload.Start(ctx, workload.Options{Conns: n})
	if err != nil {
		return r, err
	}
	defer w.Stop()
	time.Sleep(time.Second)
	for _, src := range f.sources {
		fmt.Fprintf(os.Stderr, "bench: %d connections: %s\n", n, src)
		res, err := measureChild(ctx, src, f.warm)
		if err != nil {
			return r, err
		}
		if res.Err != "" {
			return r, fmt.Errorf("%s: %s", src, res.Err)
		}
		r.Sources = append(r.Sources, res)
		if src == connections.Netlink || r.Sockets == 0 {
			r.Sockets = res.Sockets
		}
	}
	fmt.Fprintf(os.Stderr, "bench: %d connections: ss\n", n)
	r.SS = append(r.SS, runSS(ctx, f.ssRuns, "-tan"), runSS(ctx, f.ssRuns, "-tanp"))
	if f.agent != "" && (f.agentAt == 0 || f.agentAt == n) {
		fmt.Fprintf(os.Stderr, "bench: %d connections: agent for %s\n", n, f.agentWindow)
		a := runAgent(ctx, f.agent, f.agentSource, f.agentInterval, f.agentWindow)
		r.Agent = &a
	}
	return r, nil
}

// measureChild measures one source in a fresh process, so that its peak
// memory is its own.
func measureChild(ctx context.Context, src string, warm int) (sourceResult, error) {
	cmd, err := measureHelper.Command(ctx, src, strconv.Itoa(warm))
	if err != nil {
		return sourceResult{}, err
	}
	out, err := cmd.Output()
	if err != nil {
		return sourceResult{}, fmt.Errorf("measuring %s: %w", src, err)
	}
	var res sourceResult
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("measuring %s: %w (%q)", src, err, out)
	}
	return res, nil
}
