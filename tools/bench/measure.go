package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/event"
	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/pipeline"
)

// pollCost is what one poll cost.
type pollCost struct {
	WallMS, CPUMS, SourceCPUMS float64
	Allocs                     uint64
}

// sourceResult is what a measurement child reports for one source.
type sourceResult struct {
	Source  string
	Sockets int
	Reports int
	Cold    pollCost
	Warm    pollCost // medians of the warm polls
	HWMMB   float64  // peak resident set of the measuring process
	Err     string   `json:",omitempty"`
}

// tcpInfoSource names the netlink source with tcp_info in -sources; the
// other names are connections.Names().
const tcpInfoSource = connections.Netlink + "+tcp_info"

// sourceConfig is the default configuration reading through the source
// name names.
func sourceConfig(name string) (config.Config, error) {
	cfg := config.Default()
	// The table is the cost of a poll of the socket tables: with the
	// event capture, most polls would read only what changed.
	cfg.Capture = config.CapturePoll
	switch name {
	case tcpInfoSource:
		cfg.SocketSource, cfg.TCPInfo = connections.Netlink, true
	case connections.BPF, connections.Netlink, connections.ProcFS:
		cfg.SocketSource = name
	default:
		return cfg, fmt.Errorf("unknown source %q", name)
	}
	return cfg, nil
}

// timedSource measures the CPU its source's reads cost.
type timedSource struct {
	connections.Source
	cpu time.Duration
}

func (t *timedSource) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	c0 := cpuTime()
	dst, err := t.Source.Sockets(ctx, dst)
	t.cpu += cpuTime() - c0
	return dst, err
}

// measure runs one cold poll and warm polls of the whole pipeline, built
// as the agent builds it, with the default configuration.
func measure(name string, warm int) sourceResult {
	res := sourceResult{Source: name}
	cfg, err := sourceConfig(name)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	var src *timedSource
	hostname, _ := os.Hostname()
	p, err := pipeline.New(pipeline.Options{
		Config: cfg,
		Host:   event.Host{Hostname: hostname, Name: hostname},
		WrapSource: func(s connections.Source) connections.Source {
			src = &timedSource{Source: s}
			return src
		},
	})
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer p.Close()

	published := 0
	publish := func(beat.Event) { published++ }
	poll := func() (pollCost, pipeline.Stats, error) {
		src.cpu = 0
		a0 := allocs()
		c0, w0 := cpuTime(), time.Now()
		stats, err := p.Poll(context.Background(), time.Now(), publish)
		c := pollCost{
			WallMS:      ms(time.Since(w0)),
			CPUMS:       ms(cpuTime() - c0),
			SourceCPUMS: ms(src.cpu),
		}
		c.Allocs = allocs() - a0
		return c, stats, err
	}

	var stats pipeline.Stats
	if res.Cold, stats, err = poll(); err != nil {
		res.Err = err.Error()
		return res
	}
	res.Sockets, res.Reports = stats.Sockets, stats.Reports
	var costs []pollCost
	touch := func() error { return nil }
	if os.Getenv(touchNetnsEnv) != "" {
		touch = touchNamespaces
	}
	stopProfile := startCPUProfile(os.Getenv(cpuProfileEnv), name)
	for range warm {
		if err := touch(); err != nil {
			stopProfile()
			res.Err = err.Error()
			return res
		}
		c, _, err := poll()
		if err != nil {
			stopProfile()
			res.Err = err.Error()
			return res
		}
		costs = append(costs, c)
	}
	stopProfile()
	res.Warm = medianCost(costs)
	res.HWMMB = statusMB("VmHWM")
	if path := os.Getenv(heapProfileEnv); path != "" {
		writeHeapProfile(path + "." + name)
	}
	runtime.KeepAlive(p)
	return res
}

// cpuProfileEnv names a file prefix: each measurement child writes the CPU
// profile of its warm polls there (-cpuprofile).
const cpuProfileEnv = "CONNBEAT_BENCH_CPUPROFILE"

// startCPUProfile profiles into PREFIX.SOURCE and returns what stops it;
// with no prefix, or when the profile cannot start, it does nothing.
func startCPUProfile(prefix, source string) func() {
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + "." + source)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: cpu profile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "bench: cpu profile: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// heapProfileEnv names a file prefix: each measurement child writes its
// heap profile there after its polls (-heapprofile).
const heapProfileEnv = "CONNBEAT_BENCH_HEAPPROFILE"

func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: heap profile: %v\n", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "bench: heap profile: %v\n", err)
	}
}

func medianCost(costs []pollCost) pollCost {
	if len(costs) == 0 {
		return pollCost{}
	}
	pick := func(f func(pollCost) float64) float64 {
		v := make([]float64, len(costs))
		for i, c := range costs {
			v[i] = f(c)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return pollCost{
		WallMS:      pick(func(c pollCost) float64 { return c.WallMS }),
		CPUMS:       pick(func(c pollCost) float64 { return c.CPUMS }),
		SourceCPUMS: pick(func(c pollCost) float64 { return c.SourceCPUMS }),
		Allocs:      uint64(pick(func(c pollCost) float64 { return float64(c.Allocs) })),
	}
}

// cpuTime is the user+system time of the whole process (GC included).
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}

// allocs is the number of heap allocations so far.
func allocs() uint64 {
	metrics.Read(allocSample)
	return allocSample[0].Value.Uint64()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// statusMB reads a kB field of /proc/self/status in MB.
func statusMB(field string) float64 {
	return procStatusMB("/proc/self/status", field)
}

func procStatusMB(path, field string) float64 {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
