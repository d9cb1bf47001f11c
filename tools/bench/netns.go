package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/connections/netns"
	"github.com/connbeat/connbeat/internal/testkit/workload"
)

// nsRow is one source measured on the same connections held by the same
// processes, once all in one network namespace and once each process in
// a namespace of its own.
type nsRow struct {
	Namespaces int
	Processes  int
	Conns      int
	// Changing: every namespace's counters moved before each poll.
	Changing bool
	Result   sourceResult
}

// runNetns measures the namespace comparison: conns connections over
// procs processes (each with the same share, fds and listeners), first
// in the agent's namespace, then each process in a new one, so that only
// the number of namespaces differs. Each source is measured idle, and
// changing: before each warm poll (outside its measured time) the
// measuring process opens a connection to a closed port in every
// namespace, which moves its counters, so every namespace is read in
// full at every poll.
func runNetns(ctx context.Context, f flags) ([]nsRow, error) {
	if f.netnsChildEhash > 0 {
		// Namespaces made from now on get socket hash tables of their
		// own: a walk of one no longer passes the others' sockets.
		const key = "/proc/sys/net/ipv4/tcp_child_ehash_entries"
		old, err := os.ReadFile(key)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(key, []byte(strconv.Itoa(f.netnsChildEhash)), 0o644); err != nil {
			return nil, fmt.Errorf("setting tcp_child_ehash_entries: %w", err)
		}
		defer os.WriteFile(key, old, 0o644)
	}
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
		for _, changing := range []bool{false, true} {
			// Profiles of the cases side by side: PREFIX.nsN[.changing].SOURCE.
			suffix := fmt.Sprintf(".ns%d", namespaces)
			if changing {
				suffix += ".changing"
				os.Setenv(touchNetnsEnv, "1")
			}
			for _, env := range []string{cpuProfileEnv, heapProfileEnv} {
				if f.profile[env] != "" {
					os.Setenv(env, f.profile[env]+suffix)
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
				rows = append(rows, nsRow{Namespaces: namespaces, Processes: len(w.PIDs()), Conns: conns, Changing: changing, Result: res})
			}
			os.Unsetenv(touchNetnsEnv)
		}
		w.Stop()
	}
	return rows, nil
}

// printNetnsTable writes the namespace comparison, each source's warm
// poll against its own one-namespace poll.
func printNetnsTable(w io.Writer, rows []nsRow) {
	fmt.Fprintln(w, "| namespaces | processes | connections | sockets | namespaces change | reader | warm wall ms | warm CPU ms | source CPU ms | warm allocs | RSS MB | warm CPU / one namespace's | source CPU / one namespace's |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
	single := map[string]float64{}
	singleSrc := map[string]float64{}
	for _, r := range rows {
		s := r.Result
		ratio, srcRatio := "1.0x", "1.0x"
		key := fmt.Sprint(s.Source, r.Changing)
		change := "no (idle)"
		if r.Changing {
			change = "all, before every poll"
		}
		if r.Namespaces == 1 {
			single[key], singleSrc[key] = s.Warm.CPUMS, s.Warm.SourceCPUMS
		} else {
			ratio = times(s.Warm.CPUMS, single[key])
			srcRatio = times(s.Warm.SourceCPUMS, singleSrc[key])
		}
		fmt.Fprintf(w, "| %d | %d | %d | %d | %s | connbeat %s | %.1f | %.1f | %.1f | %d | %.0f | %s | %s |\n",
			r.Namespaces, r.Processes, r.Conns, s.Sockets, change, s.Source, s.Warm.WallMS, s.Warm.CPUMS, s.Warm.SourceCPUMS, s.Warm.Allocs, s.HWMMB, ratio, srcRatio)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, strings.TrimSpace(`
The same connections, processes and fds in both cases: in one namespace (the agent's),
then each process in a network namespace of its own. Warm: median of the warm polls of
the whole pipeline (every namespace listed, each read, the join, classify, dedup);
source CPU: the socket source's share of it. Idle: a namespace other than the agent's
whose counters did not move is not read again. Changing: before each warm poll (outside
its measured time) a connection to a closed port in every namespace moves its counters,
so every namespace is read at every poll.`))
}

func times(v, base float64) string {
	if base <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v/base)
}

// touchNetnsEnv, set, has a measurement child move every namespace's
// counters before each warm poll.
const touchNetnsEnv = "CONNBEAT_BENCH_TOUCH_NETNS"

// touchNamespaces connects to port 1 of 127.0.0.1 in every network
// namespace but the measuring process's own: the refused connect counts
// in the namespace's ActiveOpens and AttemptFails and leaves no socket.
func touchNamespaces() error {
	f, err := netns.New(netns.Options{ProcPath: "/proc", NamedPath: "/run/netns"})
	if err != nil {
		return err
	}
	defer f.Close()
	list, _, err := f.List(nil)
	if err != nil {
		return err
	}
	var firstErr error
	err = f.Each(context.Background(), list[1:], netns.Visit{
		Enter: func(netns.Namespace) bool { return true },
		Read: func(netns.Namespace) error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			_ = unix.Connect(fd, &unix.SockaddrInet4{Port: 1, Addr: [4]byte{127, 0, 0, 1}})
			return nil
		},
		Done: func(ns netns.Namespace, o netns.Outcome, err error) {
			if err != nil && o != netns.Vanished && firstErr == nil {
				firstErr = fmt.Errorf("namespace %d: %w", ns.Inode, err)
			}
		},
	})
	if err != nil {
		return err
	}
	return firstErr
}
