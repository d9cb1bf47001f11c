package connections

import (
	"fmt"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/model"
)

// Options say which source to open and how.
type Options struct {
	// Name is one of Names().
	Name string
	// TCPInfo asks for the kernel's tcp_info figures (netlink only).
	TCPInfo bool
	// Transports are the transports to list (connbeat.protocols); the
	// zero value lists all. A transport left out is not read at all.
	Transports model.Transports
	// ProcPath is the proc filesystem the procfs source reads.
	ProcPath string
	// Logger receives the one line that says why a source was passed over.
	Logger *logp.Logger
	// Metrics is where the source's counters are registered; nil keeps
	// them private.
	Metrics *monitoring.Registry
	// AllNamespaces reads every network namespace of the host (those of
	// processes, and the named ones under NamedNetnsPath); otherwise only
	// the namespace of the thread that calls Open.
	AllNamespaces bool
	// NamedNetnsPath is where named namespaces are mounted; empty:
	// /run/netns.
	NamedNetnsPath string
	// ReuseOwn uses the last read of the agent's own namespace again, as
	// every other namespace's, while its counters do not move: for a
	// caller that learns another way of what the counters miss (the event
	// capture sees every listen, connect and close). A read under a
	// context from FullRead reuses nothing.
	ReuseOwn bool
}

// Open opens the socket source opts.Name names, counted in opts.Metrics.
// auto reads through netlink, moving to the bpf source on hosts with many
// sockets where the agent may load it, and falls back to procfs with one
// log line when the kernel or a seccomp policy refuses netlink; with
// tcp_info, which only netlink reads, it stays on netlink. bpf, netlink and
// procfs force one.
func Open(opts Options) (Source, error) {
	if opts.Logger == nil {
		opts.Logger = logp.NewNopLogger()
	}
	m := newMetrics(opts.Metrics)
	nsm := newNSMetrics(m.reg)
	// wrap makes a source of a reader: every namespace read, counted.
	wrap := func(r nsReader) (Source, error) {
		src, err := newNSSource(r, opts, nsm)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("opening socket source (%s): %w", r.name(), err)
		}
		return m.count(src), nil
	}
	openBPF := func() (Source, error) {
		src, err := bpfiter.OpenWith(bpfiter.Options{Transports: opts.Transports})
		if err != nil {
			return nil, err
		}
		return wrap(&bpfReader{src: src})
	}
	openProcFS := func() (Source, error) {
		pfOpts := procfs.Options{Transports: opts.Transports}
		src, err := procfs.OpenWith(opts.ProcPath, pfOpts)
		if err != nil {
			return nil, fmt.Errorf("opening socket source (procfs at %s): %w", opts.ProcPath, err)
		}
		return wrap(&procfsReader{procPath: opts.ProcPath, opts: pfOpts, own: src})
	}

	switch opts.Name {
	case ProcFS:
		return openProcFS()
	case BPF:
		src, err := openBPF()
		if err != nil {
			return nil, fmt.Errorf("opening socket source (socket_source: bpf): %w", err)
		}
		return src, nil
	case Auto, Netlink:
	default:
		return nil, fmt.Errorf("unknown socket source %q (one of %v)", opts.Name, Names())
	}
	nlOpts := netlink.Options{TCPInfo: opts.TCPInfo, Transports: opts.Transports}
	src, err := netlink.Open(nlOpts)
	switch {
	case err == nil:
		nl, err := wrap(&netlinkReader{opts: nlOpts, own: src, others: map[uint64]*netlink.Source{}})
		if err != nil {
			return nil, err
		}
		if opts.Name == Auto && !opts.TCPInfo {
			return newAutoSource(nl, openBPF, opts.Logger, m.switches), nil
		}
		return nl, nil
	case opts.Name == Netlink:
		return nil, fmt.Errorf("opening socket source (socket_source: netlink): %w", err)
	case !model.IsUnavailable(err):
		return nil, fmt.Errorf("opening socket source: %w", err)
	}
	lost := ""
	if opts.TCPInfo {
		lost = "; events carry no tcp_info"
	}
	opts.Logger.Warnf("%v: falling back to procfs (slower polls%s); set socket_source: procfs to silence this", err, lost)
	return openProcFS()
}
