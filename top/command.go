package top

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// Source is the agent's pipeline as top reads it: every classified record
// of one poll, from the same sources, join and classification.
type Source interface {
	// Records polls once; the slice is reused by the next call.
	Records(ctx context.Context) ([]model.Record, error)
	// Name is the socket source the last poll read.
	Name() string
	Close() error
}

// Open builds the agent's pipeline from its configuration (connbeat.yml,
// -c, -E) with the socket source and tcp_info the flags ask for ("" and
// false: the configuration's); it returns the configured poll interval.
type Open func(socketSource string, tcpInfo bool) (Source, time.Duration, error)

// options are connbeat top's flags.
type options struct {
	interval     time.Duration
	socketSource string
	tcpInfo      bool
	once, json   bool
	filter, sort string
	reverse      bool
}

// Command returns `connbeat top`.
func Command(open Open) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show the host's connections live, one row per process and peer",
		Long: `top polls the sockets as the agent does (same source, process join and
classification; nothing is published) and shows one row per process-to-peer
edge and per listener, refreshed every poll. Keys are shown at the bottom.

--once prints one plain table and exits; --json prints one JSON object per
poll (with --once, one). --filter takes the terms the / key takes:
proc:NAME pid:N port:N dir:in|out|listen ns:NS and plain words.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			return run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), open, o)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.interval, "interval", 0, "time between polls (default: connbeat.poll_interval)")
	f.StringVar(&o.socketSource, "socket-source", "", "socket source: auto, bpf, netlink or procfs (default: connbeat.socket_source)")
	f.BoolVar(&o.tcpInfo, "tcp-info", false, "read tcp_info (netlink) to show bytes per second")
	f.BoolVar(&o.once, "once", false, "print one table (or JSON object) and exit")
	f.BoolVar(&o.json, "json", false, "print JSON objects instead of the full-screen view")
	f.StringVar(&o.filter, "filter", "", "show only the rows that match, e.g. 'proc:nginx dir:in port:443'")
	f.StringVar(&o.sort, "sort", colSockets.name, fmt.Sprintf("sort column: one of %v", SortNames()))
	f.BoolVar(&o.reverse, "reverse", false, "reverse the sort order")
	return cmd
}

func run(ctx context.Context, stdout, stderr io.Writer, open Open, o options) error {
	view, err := NewView(o.filter, o.sort, o.reverse)
	if err != nil {
		return err
	}
	src, interval, err := open(o.socketSource, o.tcpInfo)
	if err != nil {
		return err
	}
	defer src.Close()
	if o.interval > 0 {
		interval = o.interval
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	if !o.once && !o.json {
		if err := newScreenUI(nil, view, interval).run(ctx, src); err != nil {
			return fmt.Errorf("full-screen view (use --once or --json without a terminal): %w", err)
		}
		return nil
	}
	var writeErr error
	poll(ctx, src, interval, func(r result) {
		switch {
		case r.err != nil && o.once:
			writeErr = r.err
		case r.err != nil:
			fmt.Fprintf(stderr, "connbeat top: %v\n", r.err)
			return
		case o.json:
			edges, listeners := view.Rows(&r.snap)
			writeErr = WriteJSON(stdout, &r.snap, edges, listeners)
		default:
			edges, listeners := view.Rows(&r.snap)
			writeErr = WriteTable(stdout, edges, listeners)
		}
		if o.once || writeErr != nil {
			stop()
		}
	})
	return writeErr
}

// result is one poll's snapshot, or why there is none.
type result struct {
	snap Snapshot
	err  error
}

// poll polls src every interval until ctx ends and hands each result to
// out.
func poll(ctx context.Context, src Source, interval time.Duration, out func(result)) {
	var agg Aggregator
	// Rows of connbeat's own namespace show no namespace; an error leaves
	// every row's.
	var st unix.Stat_t
	if unix.Stat("/proc/self/ns/net", &st) == nil {
		agg.Own = st.Ino
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		records, err := src.Records(ctx)
		if ctx.Err() != nil {
			return
		}
		var snap Snapshot
		if err == nil {
			snap = agg.Add(records, src.Name(), time.Now())
		}
		out(result{snap: snap, err: err})
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
