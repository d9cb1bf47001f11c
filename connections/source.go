// Package connections lists the host's sockets through interchangeable
// sources (procfs, netlink, bpf, each in its own subpackage) and chooses
// between them: Open takes a source's name, and auto moves between netlink
// and bpf as the host grows and shrinks.
package connections

import (
	"context"

	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/model"
)

// Source lists the host's sockets.
type Source interface {
	// Name says which source read the last poll ("procfs", "netlink", "bpf").
	Name() string
	// Sockets appends the current sockets to dst and returns the result.
	// A source reuses its own buffers; the caller may reuse dst across calls.
	Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error)
	// Close releases what the source holds open.
	Close() error
}

// Source names, as connbeat.socket_source spells them.
const (
	Auto    = "auto"
	BPF     = bpfiter.Name
	Netlink = netlink.Name
	ProcFS  = procfs.Name
)

// Names lists the values socket_source accepts, auto first.
func Names() []string { return []string{Auto, BPF, Netlink, ProcFS} }

// ReadsTCPInfo reports whether the named source can give tcp_info, which
// only netlink reads (auto stays on netlink when tcp_info is on).
func ReadsTCPInfo(name string) bool { return name == Auto || name == Netlink }

// unchangedReporter is implemented by sources that can tell that their
// last read listed exactly what the read before it listed.
type unchangedReporter interface{ Unchanged() bool }

// forgetter is implemented by sources that keep earlier reads to use
// again (namespaces whose counters stand still).
type forgetter interface{ forget() }

// forget makes src drop the reads it keeps: for a source that is not
// read for a while, whose reads would be stale by the time it is.
func forget(src Source) {
	if f, ok := src.(forgetter); ok {
		f.forget()
	}
}

// Unchanged reports whether src's last Sockets call listed exactly the
// sockets, in the same order, that the call before it listed: every
// namespace's last read was used again (its counters stood still) or read
// again and found the same. false when src cannot tell.
func Unchanged(src Source) bool {
	u, ok := src.(unchangedReporter)
	return ok && u.Unchanged()
}
