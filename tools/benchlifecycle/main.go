// Command benchlifecycle is `make bench-lifecycle`: it measures what
// connbeat costs and misses under connection churn and on an idle host,
// and prints two tables (docs/performance.md).
//
// Churn: short loopback connections (connect, 64 bytes, close) at fixed
// rates for a fixed time, made by client processes of their own against
// a server process; per rate, the workload alone, then with the built
// agent at its defaults (aggregated events), then with flow_events on:
// flows received per connection made (both ends), the capture's kernel
// losses, connbeat's CPU per 1,000 connections, the workload's own CPU
// with and without connbeat, and connbeat's private memory.
//
// Idle: 40,000 idle loopback sockets held by child processes; the agent
// at its defaults (capture auto), polling (capture: poll) at its default
// interval and every second, and Elastic's Metricbeat system/socket
// metricset every second, built from the beats version go.mod pins: CPU
// over the window and private (anonymous) resident memory.
//
// Run as root (the capture, and joining every process's sockets).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/internal/testkit/child"
	"github.com/connbeat/connbeat/internal/testkit/workload"
	"github.com/connbeat/connbeat/model"
)

type flags struct {
	agent      string
	rates      []int
	duration   time.Duration
	clients    int
	modes      []string // capture modes of the churn rows
	idle       int      // idle sockets (0: no idle rows)
	idleWindow time.Duration
	// idleWindows consecutive windows are measured, the median reported.
	idleWindows int
	idleAgent   bool // the idle rows of connbeat (off: Metricbeat's only)
	settle      time.Duration
	queue       int
	idleSettle  time.Duration
	drain       time.Duration
	metricbeat  string // a built Metricbeat; "build" builds it; "" skips it
	cacheDir    string
	gomod       string
	jsonOut     string
}

// churnRow is one rate in one capture mode.
type churnRow struct {
	Rate    int
	Capture string // asked
	Ran     string // what the agent's log says it ran
	// Without connbeat, with it at its defaults, with flow_events.
	Alone, Default, Flows churnResult
	// Connbeat's CPU over the defaults' and the flows' runs, from the
	// start of the churn until its events were written.
	DefaultCPU, FlowsCPU time.Duration
	FlowsOut, FlowsIn    int
	Lost                 float64 // connbeat.capture.lost over the flows run
	// The capture's other counters over the flows run (connbeat.capture.*
	// less lost), and server-end flows that did not say inbound.
	CaptureCounters map[string]float64 `json:",omitempty"`
	Misdirected     int
	AnonMB          float64 // the flows run's private RSS at its end
	DefaultAnonMB   float64 // the default run's
	Err             string  `json:",omitempty"`
}

// idleResult is one process measured over an idle window.
type idleResult struct {
	Agent, Settings, Mode string
	Seconds               float64         // a window's
	CPU                   time.Duration   // the median window's
	Windows               []time.Duration // each window's, in order
	AnonMB                float64
	Err                   string `json:",omitempty"`
}

func main() {
	child.Serve(workload.Helper(), serverHelper, clientHelper)
	f := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench-lifecycle: run as root: the capture and the process join need it")
		os.Exit(1)
	}
	// Idle first: a churn leaves its closed connections in TIME_WAIT for a
	// minute, and an idle host has none of them to report.
	mb, mbErr := f.metricbeat, error(nil)
	if mb == "build" {
		mb, mbErr = buildMetricbeat(ctx, f.gomod, f.cacheDir)
	}
	var idleRows []idleResult
	if f.idle > 0 {
		waitTimeWait(ctx, os.Stderr)
		var err error
		idleRows, err = runIdle(ctx, f, mb, mbErr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-lifecycle: idle: %v\n", err)
			os.Exit(1)
		}
	}
	var churnRows []churnRow
	for _, mode := range f.modes {
		for _, rate := range f.rates {
			fmt.Fprintf(os.Stderr, "bench-lifecycle: churn %d/s for %s, capture %s\n", rate, f.duration, mode)
			r := runChurn(ctx, f, mode, rate)
			fmt.Fprintf(os.Stderr, "%+v\n", r)
			churnRows = append(churnRows, r)
		}
	}
	var mbRows []metricbeatChurn
	for _, rate := range f.rates {
		if mbErr != nil {
			mbRows = append(mbRows, metricbeatChurn{Rate: rate, Err: "skipped, cannot build Metricbeat: " + mbErr.Error()})
			continue
		}
		if mb == "" {
			break
		}
		fmt.Fprintf(os.Stderr, "bench-lifecycle: churn %d/s for %s, Metricbeat system/socket\n", rate, f.duration)
		mbRows = append(mbRows, runMetricbeatChurn(ctx, f, mb, rate))
	}
	printTables(os.Stdout, f, churnRows, mbRows, idleRows)
	if f.jsonOut != "" {
		raw, _ := json.MarshalIndent(map[string]any{"churn": churnRows, "metricbeat_churn": mbRows, "idle": idleRows}, "", "  ")
		if err := os.WriteFile(f.jsonOut, raw, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench-lifecycle: %v\n", err)
		}
	}
}

func parseFlags() flags {
	var f flags
	var rates, modes string
	flag.StringVar(&f.agent, "agent", "./connbeat", "the built connbeat binary")
	flag.StringVar(&rates, "rates", "1000,5000,20000", "churn rates, connections a second (empty: no churn rows)")
	flag.DurationVar(&f.duration, "duration", 10*time.Second, "how long each churn runs")
	flag.IntVar(&f.clients, "clients", 4, "client processes the churn is spread over")
	flag.StringVar(&modes, "modes", "auto,poll", "connbeat.capture of the churn rows")
	flag.IntVar(&f.idle, "idle", 40000, "idle sockets of the idle rows (0: no idle rows)")
	flag.DurationVar(&f.idleWindow, "idle-window", 30*time.Second, "how long idle CPU is measured")
	flag.IntVar(&f.idleWindows, "idle-windows", 3, "idle windows measured one after the other (the median is reported, and each)")
	flag.BoolVar(&f.idleAgent, "idle-connbeat", true, "measure connbeat in the idle rows (false: Metricbeat's row only)")
	flag.DurationVar(&f.settle, "settle", 10*time.Second, "how long an agent runs before it is measured (start, first polls)")
	flag.DurationVar(&f.idleSettle, "idle-settle", 45*time.Second, "how long an agent runs before an idle row measures it: past its first aggregation window, in which it starts, and socket_source auto's move to bpf")
	flag.IntVar(&f.queue, "queue", 0, "queue.mem.events of the churn rows' agents (0: libbeat's default, as the agent ships)")
	flag.DurationVar(&f.drain, "drain", 5*time.Second, "how long a churn row waits after the churn for the events to be written")
	flag.StringVar(&f.metricbeat, "metricbeat", "build", "a Metricbeat binary; build: build it from go.mod's beats version; empty: skip its row")
	flag.StringVar(&f.cacheDir, "cache", filepath.Join(os.TempDir(), "connbeat-bench-cache"), "where a built Metricbeat is kept between runs")
	flag.StringVar(&f.gomod, "gomod", "go.mod", "connbeat's go.mod (the beats version and replace lines Metricbeat is built with)")
	flag.StringVar(&f.jsonOut, "json", "", "also write the raw results to this file")
	flag.Parse()
	for _, s := range strings.Split(rates, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench-lifecycle: -rates: %q is not a rate\n", s)
			os.Exit(2)
		}
		f.rates = append(f.rates, n)
	}
	for _, m := range strings.Split(modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "auto", "events", "poll":
			f.modes = append(f.modes, m)
		case "":
		default:
			fmt.Fprintf(os.Stderr, "bench-lifecycle: -modes: %q is not auto, events or poll\n", m)
			os.Exit(2)
		}
	}
	if f.clients < 1 {
		f.clients = 1
	}
	return f
}

// runChurn measures one rate: the workload alone, then with the agent at
// its defaults, then with flow_events on.
func runChurn(ctx context.Context, f flags, mode string, rate int) churnRow {
	r := churnRow{Rate: rate, Capture: mode}
	var err error
	r.Alone, err = churnOnce(ctx, f, rate, nil)
	if err != nil {
		r.Err = "alone: " + err.Error()
		return r
	}
	for _, flows := range []bool{false, true} {
		if flows && mode == "poll" {
			break // polling sees no flows to send
		}
		a, err := startAgent(ctx, f.agent, agentOptions{capture: mode, flows: flows, queue: f.queue})
		if err != nil {
			r.Err = err.Error()
			return r
		}
		time.Sleep(f.settle)
		r.Ran = a.captureMode()
		before, _ := a.stats()
		c0, err0 := a.cpu()
		res, err := churnOnce(ctx, f, rate, a)
		c1, err1 := a.cpu()
		after, _ := a.stats()
		if err == nil && (err0 != nil || err1 != nil) {
			err = fmt.Errorf("connbeat exited: %s", lastLines(a.logText(), 5))
		}
		if err != nil {
			a.stop()
			r.Err = err.Error()
			return r
		}
		if flows {
			r.Flows, r.FlowsCPU = res, c1-c0
			r.FlowsOut, r.FlowsIn = a.flowsOut, a.flowsIn
			r.Lost = after["connbeat.capture.lost"] - before["connbeat.capture.lost"]
			r.CaptureCounters = map[string]float64{}
			for k, v := range after {
				if strings.HasPrefix(k, "connbeat.capture.") && k != "connbeat.capture.lost" && v != before[k] {
					r.CaptureCounters[strings.TrimPrefix(k, "connbeat.capture.")] = v - before[k]
				}
			}
			r.Misdirected = a.misdirected
			r.AnonMB = a.anonMB()
		} else {
			r.Default, r.DefaultCPU = res, c1-c0
			r.DefaultAnonMB = a.anonMB()
		}
		a.stop()
	}
	return r
}

// churnOnce runs the churn once with a fresh server; with an agent, it
// then waits until the agent has written the churn's flows (or nothing
// more for the drain time).
func churnOnce(ctx context.Context, f flags, rate int, a *agent) (churnResult, error) {
	srv, err := startServer(ctx)
	if err != nil {
		return churnResult{}, err
	}
	res, err := churn(ctx, srv, rate, f.clients, f.duration)
	if a != nil && err == nil {
		last, since := -1, time.Now()
		for time.Since(since) < f.drain {
			out, in, cerr := a.countFlows(srv.port)
			if cerr != nil {
				err = cerr
				break
			}
			if out+in != last {
				last, since = out+in, time.Now()
			}
			if out >= res.Made && in >= res.Made {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	res.CPU += srv.stop()
	return res, err
}

// waitTimeWait waits (up to 70 s, longer than the kernel keeps one) until
// the host holds fewer than 100 TIME_WAIT sockets, so that an idle row
// measures idle sockets and not an earlier run's closed connections.
func waitTimeWait(ctx context.Context, log io.Writer) {
	deadline := time.Now().Add(70 * time.Second)
	for said := false; ; said = true {
		n := timeWaitSockets()
		if n < 100 || time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		if !said {
			fmt.Fprintf(log, "bench-lifecycle: waiting for %d TIME_WAIT sockets to go before the idle rows\n", n)
		}
		time.Sleep(time.Second)
	}
}

// timeWaitSockets counts the TIME_WAIT sockets of the tool's namespace,
// read through connbeat's procfs source (0 when it cannot read them).
func timeWaitSockets() int {
	src, err := procfs.OpenWith("/proc", procfs.Options{Transports: model.TransportsOf(model.TCP)})
	if err != nil {
		return 0
	}
	sockets, err := src.Sockets(context.Background(), nil)
	if err != nil {
		return 0
	}
	n := 0
	for _, s := range sockets {
		if s.State == model.StateTimeWait {
			n++
		}
	}
	return n
}

// runIdle holds f.idle idle sockets and measures the agent's settings and
// Metricbeat on them, one at a time.
func runIdle(ctx context.Context, f flags, mb string, mbErr error) ([]idleResult, error) {
	fmt.Fprintf(os.Stderr, "bench-lifecycle: starting %d idle sockets...\n", f.idle)
	w, err := workload.Start(ctx, workload.Options{Conns: f.idle / 2})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var rows []idleResult
	agents := []agentOptions{
		{capture: "auto"},
		{capture: "poll"},
		{capture: "poll", pollInterval: time.Second},
	}
	if !f.idleAgent {
		agents = nil
	}
	for _, o := range agents {
		fmt.Fprintf(os.Stderr, "bench-lifecycle: idle, connbeat %s\n", o)
		res := idleResult{Agent: "connbeat", Settings: o.String()}
		a, err := startAgent(ctx, f.agent, o)
		if err != nil {
			res.Err = err.Error()
			rows = append(rows, res)
			continue
		}
		time.Sleep(f.idleSettle)
		res.Mode = a.captureMode()
		measureIdle(&res, a.pid(), f.idleWindows, f.idleWindow, func() string { return lastLines(a.logText(), 5) })
		a.stop()
		rows = append(rows, res)
	}
	if mbErr != nil {
		rows = append(rows, idleResult{Agent: "Metricbeat system/socket", Settings: "period: 1s",
			Err: "skipped, cannot build Metricbeat: " + mbErr.Error()})
		return rows, nil
	}
	if mb != "" {
		fmt.Fprintln(os.Stderr, "bench-lifecycle: idle, Metricbeat system/socket")
		rows = append(rows, runMetricbeat(ctx, mb, time.Second, f.idleSettle, f.idleWindows, f.idleWindow))
	}
	return rows, nil
}
