// Command benchconntrack is `make bench-conntrack`: it creates and deletes
// conntrack entries through ctnetlink (no packets) at given rates and as
// fast as the machine allows, while the built agent, with the conntrack
// input on, writes events to a file and `conntrack -E` prints them, and
// prints one table row per rate: events generated, written by connbeat,
// printed by conntrack -E, lost, and connbeat's CPU per 100,000 events.
// All of it runs in a network namespace of its own, so that the host's
// other traffic is neither counted nor competes for the sockets' buffers.
// Run as root.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// The benchmark's entries: addresses of the benchmarking range (RFC 2544),
// which no host of the machine uses, so the counts select them alone and
// the agent's process join has no local end to look up.
const (
	srcPrefix = "198.18."
	dstAddr   = "198.19.0.1"
)

type flags struct {
	agent      string
	entries    int
	rates      []int // events per second; 0 is as fast as possible
	window     int   // entries open at once
	settle     time.Duration
	conntrak   string
	generators int
	netns      string // the namespace's name, set by main
}

func main() {
	f := parseFlags()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench-conntrack: run as root (ctnetlink and conntrack events need CAP_NET_ADMIN)")
		os.Exit(1)
	}
	f.netns = fmt.Sprintf("connbeat-bench-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", f.netns).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "bench-conntrack: ip netns add: %v: %s\n", err, out)
		os.Exit(1)
	}
	defer exec.Command("ip", "netns", "del", f.netns).Run()
	var rows []row
	for _, rate := range f.rates {
		r, err := runRate(f, rate)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-conntrack: rate %s: %v\n", rateName(rate), err)
			_ = exec.Command("ip", "netns", "del", f.netns).Run()
			os.Exit(1)
		}
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "%+v\n", r)
	}
	printTable(os.Stdout, f, rows)
}

func parseFlags() flags {
	var f flags
	var rates string
	flag.StringVar(&f.agent, "agent", "./connbeat", "the built connbeat binary")
	flag.IntVar(&f.entries, "n", 50000, "entries created and deleted per rate (twice as many events)")
	flag.StringVar(&rates, "rates", "10000,20000,40000,max", "event rates to generate, events/s; max: as fast as possible")
	flag.IntVar(&f.window, "window", 1000, "entries open at once: each creation past it deletes the oldest")
	flag.DurationVar(&f.settle, "settle", 3*time.Second, "how long counts must stay unchanged for a run to end")
	flag.StringVar(&f.conntrak, "conntrack", "conntrack", "the conntrack tool (Debian package conntrack)")
	flag.IntVar(&f.generators, "generators", 2, "goroutines creating and deleting entries, each with its own ctnetlink socket")
	flag.Parse()
	if f.generators < 1 || f.window < f.generators {
		fmt.Fprintln(os.Stderr, "bench-conntrack: -generators must be at least 1 and at most -window")
		os.Exit(2)
	}
	for _, r := range strings.Split(rates, ",") {
		if r == "max" {
			f.rates = append(f.rates, 0)
			continue
		}
		n, err := strconv.Atoi(r)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench-conntrack: bad rate %q\n", r)
			os.Exit(2)
		}
		f.rates = append(f.rates, n)
	}
	return f
}

func rateName(r int) string {
	if r == 0 {
		return "max"
	}
	return strconv.Itoa(r)
}

// row is one rate's results.
type row struct {
	Target            int // events/s asked for, 0 for max
	Rate              float64
	Generated         int
	Written           int // by connbeat, made-up re-sync events included
	Resynced          int
	Lost              int // the kernel's drops on connbeat's socket
	Dropped           int // connbeat events dropped on a full output queue
	ConntrackPrinted  int
	ConntrackENOBUFS  bool
	CPUPer100k        time.Duration
	AgentCPU, Elapsed time.Duration
}

// runRate starts the agent and conntrack -E, generates the entries, waits
// until both stop counting, and reads the results.
func runRate(f flags, rate int) (row, error) {
	r := row{Target: rate}
	dir, err := os.MkdirTemp("", "connbeat-bench-conntrack")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)

	a, err := startAgent(f.agent, dir, f.netns)
	if err != nil {
		return r, err
	}
	defer a.stop()

	ctOut, err := os.Create(filepath.Join(dir, "conntrack-E.txt"))
	if err != nil {
		return r, err
	}
	defer ctOut.Close()
	ctErr, err := os.Create(filepath.Join(dir, "conntrack-E.err"))
	if err != nil {
		return r, err
	}
	defer ctErr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctE := exec.CommandContext(ctx, "ip", "netns", "exec", f.netns, f.conntrak, "-E", "-e", "NEW,DESTROY")
	ctE.Stdout, ctE.Stderr = ctOut, ctErr
	if err := ctE.Start(); err != nil {
		return r, fmt.Errorf("starting conntrack -E: %w", err)
	}
	defer func() { cancel(); _ = ctE.Wait() }()
	time.Sleep(time.Second) // conntrack -E subscribes

	cpu0, _, err := a.cpu()
	if err != nil {
		return r, err
	}
	start := time.Now()
	gen, err := generate(f, rate)
	elapsed := time.Since(start)
	if err != nil {
		return r, err
	}
	r.Generated = gen
	r.Rate = float64(gen) / elapsed.Seconds()

	// Until connbeat's file and conntrack -E's output stop growing.
	var last [2]int
	stable := time.Now()
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		w, _, err := a.count()
		if err != nil {
			return r, err
		}
		p, err := countLines(ctOut.Name())
		if err != nil {
			return r, err
		}
		if [2]int{w, p} != last {
			last, stable = [2]int{w, p}, time.Now()
		} else if time.Since(stable) >= f.settle {
			break
		}
	}
	cpu1, _, err := a.cpu()
	if err != nil {
		return r, err
	}
	r.AgentCPU = cpu1 - cpu0
	r.Elapsed = elapsed
	r.CPUPer100k = time.Duration(float64(r.AgentCPU) * 100000 / float64(gen))
	if r.Written, r.Resynced, err = a.count(); err != nil {
		return r, err
	}
	st, err := a.stats()
	if err != nil {
		return r, err
	}
	r.Lost, r.Dropped = st.lost, st.dropped
	if r.ConntrackPrinted, err = countLines(ctOut.Name()); err != nil {
		return r, err
	}
	b, _ := os.ReadFile(ctErr.Name())
	r.ConntrackENOBUFS = strings.Contains(string(b), "ENOBUFS")
	return r, nil
}

// generate creates and deletes f.entries entries in f.generators
// goroutines, each with its own ctnetlink socket and a share of the
// entries, keeping f.window open, paced to rate events a second in all
// (0: unpaced). It returns the events generated: one NEW per creation,
// one DESTROY per deletion.
func generate(f flags, rate int) (int, error) {
	type result struct {
		events int
		err    error
	}
	results := make(chan result, f.generators)
	start := time.Now()
	for g := 0; g < f.generators; g++ {
		go func() {
			n, err := generateShare(f, rate/f.generators, g, start)
			results <- result{n, err}
		}()
	}
	total := 0
	var err error
	for range f.generators {
		r := <-results
		total += r.events
		if r.err != nil {
			err = r.err
		}
	}
	return total, err
}

// generateShare handles the entries i with i % f.generators == g.
func generateShare(f flags, rate, g int, start time.Time) (int, error) {
	ns, err := os.Open("/var/run/netns/" + f.netns)
	if err != nil {
		return 0, err
	}
	c, err := ct.Dial(&netlink.Config{NetNS: int(ns.Fd())})
	ns.Close()
	if err != nil {
		return 0, fmt.Errorf("ctnetlink: %w", err)
	}
	defer c.Close()
	dst := netip.MustParseAddr(dstAddr)
	flowOf := func(i int) ct.Flow {
		src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		return ct.NewFlow(unix.IPPROTO_TCP, 0, src, dst, uint16(1024+i%60000), 443, 120, 0)
	}
	events := 0
	pace := func() {
		if rate == 0 {
			return
		}
		if ahead := time.Until(start.Add(time.Duration(events) * time.Second / time.Duration(rate))); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	window := f.window / f.generators
	var mine []int
	for i := g; i < f.entries; i += f.generators {
		mine = append(mine, i)
	}
	for k, i := range mine {
		pace()
		if err := c.Create(flowOf(i)); err != nil {
			return events, fmt.Errorf("creating entry %d: %w", i, err)
		}
		events++
		if k >= window {
			pace()
			if err := c.Delete(flowOf(mine[k-window])); err != nil {
				return events, fmt.Errorf("deleting entry %d: %w", mine[k-window], err)
			}
			events++
		}
	}
	for _, i := range mine[max(0, len(mine)-window):] {
		pace()
		if err := c.Delete(flowOf(i)); err != nil {
			return events, fmt.Errorf("deleting entry %d: %w", i, err)
		}
		events++
	}
	return events, nil
}

// countLines counts conntrack -E's lines about the benchmark's entries.
func countLines(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strings.Count(string(b), "src="+srcPrefix), nil
}
