// Package top is `connbeat top`: it folds each poll's classified records
// into one row per process-to-peer edge and per listener, and shows them
// full-screen, as a plain table or as JSON.
package top

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/connbeat/connbeat/model"
)

// Endpoint is one end of a row. Port is 0 where the row stands for any
// port: a client's ephemeral ports, which would split one peer into as
// many rows as it has connections.
type Endpoint struct {
	IP   netip.Addr
	Port uint16
}

func (e Endpoint) String() string {
	if !e.IP.IsValid() {
		return "-"
	}
	if e.Port == 0 {
		return e.IP.String()
	}
	return netip.AddrPortFrom(e.IP, e.Port).String()
}

// Process is the owner of a row's sockets; PID 0 when none could be read
// (another user's process without privileges, a TIME_WAIT socket).
type Process struct {
	PID  int32
	Name string
}

func (p Process) String() string {
	if p.PID == 0 {
		return "?"
	}
	return fmt.Sprintf("%s[%d]", p.Name, p.PID)
}

// Rate is a per-second figure that a poll may not be able to give: the
// first poll has nothing to compare with, and a socket source without
// tcp_info has no byte counters.
type Rate struct {
	PerSec float64
	Known  bool
}

func (r Rate) String() string {
	if !r.Known {
		return "-"
	}
	return humanize(r.PerSec)
}

// MarshalJSON writes null for an unknown rate, so tools tell "none" from
// "not measured".
func (r Rate) MarshalJSON() ([]byte, error) {
	if !r.Known {
		return []byte("null"), nil
	}
	return json.Marshal(r.PerSec)
}

// humanize prints n with a k, M or G suffix in at most 5 characters.
func humanize(n float64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fG", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", n/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.0fk", n/1e3)
	case n >= 100 || n == 0:
		return fmt.Sprintf("%.0f", n)
	}
	return fmt.Sprintf("%.1f", n)
}

// Row is a process's sockets to one peer in one direction (an edge), or a
// process's listening sockets on one address (a listener).
type Row struct {
	Process Process
	// Container names the container the process runs in; empty until the
	// model carries it, when the column shows it without further change.
	Container string
	// NetNS is the sockets' network namespace inode; 0 for connbeat's
	// own namespace (Aggregator.Own).
	NetNS     uint64
	Transport model.Transport
	Direction model.Direction
	// Local and Remote follow the agent's dedup keys: an outbound row's
	// local end and an inbound row's remote end carry no port.
	Local, Remote Endpoint
	Sockets       int
	// Clients is, for a listener, how many inbound sockets it has
	// accepted that are open now.
	Clients int
	// ConnsPerSec is how many connections the row's process opened (or
	// accepted) per second. A poll cannot count connections that open and
	// close between two polls, so it stays unknown until the model carries
	// the event capture's counts.
	ConnsPerSec Rate
	// BytesPerSec is the bytes sent and received per second by the row's
	// sockets, from the tcp_info counters of two polls (tcp_info on).
	BytesPerSec Rate
}

// Where is the row's namespace column: its container when known, else its
// network namespace inode, else "-".
func (r *Row) Where() string {
	switch {
	case r.Container != "":
		return r.Container
	case r.NetNS != 0:
		return fmt.Sprint(r.NetNS)
	}
	return "-"
}

// Snapshot is what one poll shows.
type Snapshot struct {
	Time      time.Time
	Source    string // the socket source read
	Sockets   int
	Edges     []Row
	Listeners []Row
}

// rowKey groups the records of one row.
type rowKey struct {
	pid           int32
	netns         uint64
	transport     model.Transport
	dir           model.Direction
	local, remote Endpoint
}

// socketID tells a socket apart from every other open at the same time, so
// that its byte counters can be compared between polls.
type socketID struct {
	netns         uint64
	inode         uint64
	local, remote netip.AddrPort
}

// Aggregator folds each poll's records into a Snapshot. It keeps the
// previous poll's byte counters, per socket, to give byte rates.
type Aggregator struct {
	// Own is the inode of connbeat's own network namespace: its rows
	// carry no NetNS, so that the host's rows say "-" (and --json leaves
	// netns out) while other namespaces' rows name theirs.
	Own       uint64
	prevBytes map[socketID]uint64
	prevAt    time.Time
}

// Add folds one poll's records, taken at now, into a snapshot. Rows are in
// no particular order; View sorts and filters them. The snapshot holds no
// reference to records, which the pipeline reuses.
func (a *Aggregator) Add(records []model.Record, source string, now time.Time) Snapshot {
	snap := Snapshot{Time: now, Source: source, Sockets: len(records)}
	index := map[rowKey]int{}
	bytes := make(map[socketID]uint64, len(a.prevBytes))
	deltas := map[rowKey]uint64{}
	for i := range records {
		r := &records[i]
		k := keyOf(r)
		if info := r.Socket.Info; info != nil {
			id := socketID{netns: r.Socket.NetNS, inode: r.Socket.Inode,
				local:  netip.AddrPortFrom(r.Socket.LocalIP, r.Socket.LocalPort),
				remote: netip.AddrPortFrom(r.Socket.RemoteIP, r.Socket.RemotePort)}
			total := info.BytesAcked + info.BytesReceived
			bytes[id] = total
			// A socket new since the last poll counted from zero, as
			// the kernel's counters did.
			deltas[k] += total - min(total, a.prevBytes[id])
		}
		if j, ok := index[k]; ok {
			(*rowsOf(&snap, k.dir))[j].Sockets++
			continue
		}
		netns := k.netns
		if netns == a.Own {
			netns = 0
		}
		row := Row{NetNS: netns, Transport: k.transport, Direction: k.dir,
			Local: k.local, Remote: k.remote, Sockets: 1}
		if p := r.Process; p != nil {
			row.Process = Process{PID: p.PID, Name: cmp.Or(p.Name, p.Binary)}
		}
		rows := rowsOf(&snap, k.dir)
		index[k] = len(*rows)
		*rows = append(*rows, row)
	}
	if !a.prevAt.IsZero() {
		secs := now.Sub(a.prevAt).Seconds()
		for k, d := range deltas {
			if secs > 0 {
				(*rowsOf(&snap, k.dir))[index[k]].BytesPerSec = Rate{PerSec: float64(d) / secs, Known: true}
			}
		}
	}
	a.prevBytes, a.prevAt = bytes, now
	countClients(&snap)
	return snap
}

func rowsOf(s *Snapshot, dir model.Direction) *[]Row {
	if dir == model.Listening {
		return &s.Listeners
	}
	return &s.Edges
}

func keyOf(r *model.Record) rowKey {
	s := &r.Socket
	k := rowKey{netns: s.NetNS, transport: s.Transport, dir: r.Direction,
		local: Endpoint{IP: s.LocalIP, Port: s.LocalPort}}
	if r.Process != nil {
		k.pid = r.Process.PID
	}
	switch r.Direction {
	case model.Outbound:
		k.local.Port = 0
		k.remote = Endpoint{IP: s.RemoteIP, Port: s.RemotePort}
	case model.Inbound:
		k.remote = Endpoint{IP: s.RemoteIP}
	}
	return k
}

// countClients sets each listener's Clients from the inbound rows on its
// port: those to its address, or to any address for a wildcard listener.
func countClients(s *Snapshot) {
	type port struct {
		netns     uint64
		transport model.Transport
		port      uint16
	}
	byPort := map[port][]int{}
	for i, l := range s.Listeners {
		p := port{l.NetNS, l.Transport, l.Local.Port}
		byPort[p] = append(byPort[p], i)
	}
	for _, e := range s.Edges {
		if e.Direction != model.Inbound {
			continue
		}
		ls := byPort[port{e.NetNS, e.Transport, e.Local.Port}]
		// The most specific listener takes the connection, as in the
		// kernel: one on the address before a wildcard one.
		best := -1
		for _, i := range ls {
			lip := s.Listeners[i].Local.IP
			if lip == e.Local.IP {
				best = i
				break
			}
			if lip.IsUnspecified() && best < 0 {
				best = i
			}
		}
		if best >= 0 {
			s.Listeners[best].Clients += e.Sockets
		}
	}
}
