package top

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/connbeat/connbeat/model"
)

// column is one column of top's tables: how a row shows in it and how two
// rows compare in it. The full-screen view and the plain table share them.
type column struct {
	name  string // what --sort calls it
	title string
	// number columns are aligned right and sort largest first.
	number bool
	cell   func(*Row) string
	cmp    func(a, b *Row) int
	// minWidth, when set, is how narrow the full-screen view may make
	// the column to fit the screen, cutting its text with fit.
	minWidth int
	// needed, when set, says whether the full-screen view shows the
	// column for these rows: it has no room for one that says the same
	// on every row. The plain table and JSON always have it.
	needed func(rows []Row) bool
}

var (
	colProcess = column{name: "process", title: "PROCESS", minWidth: 12,
		cell: func(r *Row) string { return r.Process.String() },
		cmp: func(a, b *Row) int {
			return cmp.Or(strings.Compare(a.Process.Name, b.Process.Name), cmp.Compare(a.Process.PID, b.Process.PID))
		}}
	colWhere = column{name: "ns", title: "NS", minWidth: 4,
		cell: (*Row).Where,
		cmp: func(a, b *Row) int {
			return cmp.Or(strings.Compare(a.Container, b.Container), cmp.Compare(a.NetNS, b.NetNS))
		}}
	colDir = column{name: "dir", title: "DIR",
		cell: func(r *Row) string { return dirName(r.Direction) },
		cmp:  func(a, b *Row) int { return cmp.Compare(a.Direction, b.Direction) }}
	colTransport = column{name: "proto", title: "PROTO",
		cell: func(r *Row) string { return r.Transport.String() },
		cmp:  func(a, b *Row) int { return cmp.Compare(a.Transport, b.Transport) },
		needed: func(rows []Row) bool {
			return slices.ContainsFunc(rows, func(r Row) bool { return r.Transport != model.TCP })
		}}
	colLocal = column{name: "local", title: "LOCAL",
		cell: func(r *Row) string { return r.Local.String() },
		cmp:  func(a, b *Row) int { return cmpEndpoint(a.Local, b.Local) }}
	colListen = column{name: "local", title: "LISTEN", cell: colLocal.cell, cmp: colLocal.cmp}
	colRemote = column{name: "remote", title: "REMOTE",
		cell: func(r *Row) string { return r.Remote.String() },
		cmp:  func(a, b *Row) int { return cmpEndpoint(a.Remote, b.Remote) }}
	colSockets = column{name: "sockets", title: "SOCK", number: true,
		cell: func(r *Row) string { return fmt.Sprint(r.Sockets) },
		cmp:  func(a, b *Row) int { return cmp.Compare(a.Sockets, b.Sockets) }}
	colConns = column{name: "conns", title: "CONN/S", number: true,
		cell: func(r *Row) string { return r.ConnsPerSec.String() },
		cmp:  func(a, b *Row) int { return cmpRate(a.ConnsPerSec, b.ConnsPerSec) }}
	colBytes = column{name: "bytes", title: "BYTES/S", number: true,
		cell: func(r *Row) string { return r.BytesPerSec.String() },
		cmp:  func(a, b *Row) int { return cmpRate(a.BytesPerSec, b.BytesPerSec) }}
	colClients = column{name: "clients", title: "CLIENTS", number: true,
		cell: func(r *Row) string { return fmt.Sprint(r.Clients) },
		cmp:  func(a, b *Row) int { return cmp.Compare(a.Clients, b.Clients) }}
)

var (
	// edgeColumns are the edges pane's, and the plain table's: listeners
	// are rows there too, with DIR listen.
	edgeColumns     = []*column{&colProcess, &colWhere, &colDir, &colTransport, &colLocal, &colRemote, &colSockets, &colConns, &colBytes}
	listenerColumns = []*column{&colProcess, &colWhere, &colTransport, &colListen, &colSockets, &colClients}
	// tieBreak orders rows that the sort column finds equal.
	tieBreak = []*column{&colProcess, &colDir, &colRemote, &colLocal, &colWhere}
)

// SortNames lists what --sort accepts.
func SortNames() []string {
	names := make([]string, len(edgeColumns))
	for i, c := range edgeColumns {
		names[i] = c.name
	}
	return names
}

func sortColumn(name string) (*column, error) {
	for _, c := range edgeColumns {
		if c.name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("unknown sort column %q (one of %s)", name, strings.Join(SortNames(), ", "))
}

// fit returns the row's text in the column cut to width runes with an
// ellipsis; a process keeps its pid, cutting its name.
func (c *column) fit(r *Row, width int) string {
	text := []rune(c.cell(r))
	if len(text) <= width {
		return string(text)
	}
	if c == &colProcess && r.Process.PID != 0 {
		pid := fmt.Sprintf("[%d]", r.Process.PID)
		if name := []rune(r.Process.Name); width-len(pid)-1 >= 1 {
			return string(name[:min(len(name), width-len(pid)-1)]) + "…" + pid
		}
	}
	return string(text[:width-1]) + "…"
}

// shown returns the columns the full-screen view shows for rows.
func shown(cols []*column, rows []Row) []*column {
	out := make([]*column, 0, len(cols))
	for _, c := range cols {
		if c.needed == nil || c.needed(rows) {
			out = append(out, c)
		}
	}
	return out
}

func dirName(d model.Direction) string {
	switch d {
	case model.Inbound:
		return "in"
	case model.Outbound:
		return "out"
	case model.Listening:
		return "listen"
	}
	return "?"
}

func cmpEndpoint(a, b Endpoint) int {
	return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
}

// cmpRate puts unknown rates below every known one.
func cmpRate(a, b Rate) int {
	if a.Known != b.Known {
		if a.Known {
			return 1
		}
		return -1
	}
	return cmp.Compare(a.PerSec, b.PerSec)
}
