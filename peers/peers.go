// Package peers names, for each connection whose other end is a socket on
// this host too, the process that holds that other end: a connection's
// (local, remote) is its peer's (remote, local), on loopback within one
// network namespace, or across namespaces (a veth pair, a bridge between
// containers) when the addresses are not loopback ones.
package peers

import (
	"github.com/connbeat/connbeat/model"
)

// ambiguous marks a key more than one record has: its peer cannot be told.
const ambiguous = -1

// key is one end of a connection as its socket sees it. Addresses are
// kept as 16 bytes (IPv4 ones mapped) and the fields laid out without
// padding or pointers, so that maps hash and compare it as one block of
// memory: Link does a few map operations per connection, every poll.
type key struct {
	local, remote [16]byte
	netns         uint64
	lport, rport  uint16
	transport     model.Transport
	// kind is set only in the keys kept to tell an unchanged poll.
	kind model.Kind
	pad  [2]byte
}

// swap returns the key of the other end's socket.
func (k key) swap() key {
	k.local, k.remote = k.remote, k.local
	k.lport, k.rport = k.rport, k.lport
	return k
}

// Linker sets model.Record.Peer. It keeps its maps between calls to
// avoid reallocating them and is not safe for concurrent use.
type Linker struct {
	// same indexes the connection records by namespace and addresses;
	// across by addresses only, for those that may cross namespaces.
	same, across map[key]int32
	// size is the largest number of records the maps were filled with
	// since they were made: maps do not shrink when cleared.
	size int
	// last holds the previous call's records' keys, in order, and peerOf
	// the index of each one's peer (-1: none): a poll of an unchanged host
	// (the same sockets in the same order) takes its peers from them
	// without a map operation.
	last   []key
	peerOf []int32
	// want and home are LinkReports' keys: the reports' peers', and
	// those of the peers found across namespaces.
	want, home map[key]*candidate
}

// New returns a Linker.
func New() *Linker {
	return &Linker{same: map[key]int32{}, across: map[key]int32{}}
}

// Link sets the Peer of every connection record whose other end is
// another record of the same poll: O(n) in the records, with two map
// operations each. A peer found more than once (the same addresses in two
// other namespaces) is left unset rather than guessed. Records whose
// peer is not local, or whose peer's owner is unknown, get a nil Peer.
func (l *Linker) Link(records []model.Record) {
	if l.unchanged(records) {
		for i := range records {
			records[i].Peer = nil
			if j := l.peerOf[i]; j >= 0 {
				records[i].Peer = records[j].Process
			}
		}
		return
	}
	l.reset(len(records))
	for i := range records {
		r := &records[i]
		r.Peer = nil
		if r.Kind != model.Connection {
			continue
		}
		k := keyOf(&r.Socket)
		add(l.same, k, int32(i))
		if crossable(&r.Socket) {
			k.netns = 0
			add(l.across, k, int32(i))
		}
	}
	for i := range records {
		l.peerOf[i] = -1
		r := &records[i]
		if r.Kind != model.Connection {
			continue
		}
		k := keyOf(&r.Socket).swap()
		if j, ok := l.same[k]; ok {
			if j != ambiguous {
				r.Peer, l.peerOf[i] = records[j].Process, j
			}
			continue
		}
		if !crossable(&r.Socket) {
			continue
		}
		k.netns = 0
		if j, ok := l.across[k]; ok && j != ambiguous && !l.pairedAtHome(&records[j].Socket) {
			r.Peer, l.peerOf[i] = records[j].Process, j
		}
	}
}

// unchanged reports whether records are the previous call's sockets in
// the same order, and keeps their keys for the next call.
func (l *Linker) unchanged(records []model.Record) bool {
	n := len(records)
	same := n == len(l.last)
	if cap(l.last) < n || (cap(l.last) > 4*n && cap(l.last) > 1024) {
		l.last, l.peerOf, same = make([]key, n), make([]int32, n), false
	}
	l.last, l.peerOf = l.last[:n], l.peerOf[:n]
	for i := range records {
		k := keyOf(&records[i].Socket)
		k.kind = records[i].Kind
		if same && l.last[i] != k {
			same = false
		}
		l.last[i] = k
	}
	return same
}

// pairedAtHome reports whether a socket's peer is in its own namespace: a
// socket has one peer, so one found there is not this other namespace's.
func (l *Linker) pairedAtHome(s *model.Socket) bool {
	_, ok := l.same[keyOf(s).swap()]
	return ok
}

// Release drops what the Linker keeps between calls (its maps, the last
// call's keys), for a caller whose calls are far apart: the next call
// makes them anew and does not take the last call's peers.
func (l *Linker) Release() {
	l.same, l.across, l.size = nil, nil, 0
	l.last, l.peerOf = nil, nil
}

// reset empties the maps, making them anew when a poll with many more
// sockets than this one left them large, or Release dropped them.
func (l *Linker) reset(n int) {
	if l.same == nil || (l.size > 4*n && l.size > 1024) {
		l.same, l.across, l.size = make(map[key]int32, n), map[key]int32{}, 0
	}
	clear(l.same)
	clear(l.across)
	l.size = max(l.size, n)
}

func keyOf(s *model.Socket) key {
	return key{
		local:     s.LocalIP.As16(),
		remote:    s.RemoteIP.As16(),
		lport:     s.LocalPort,
		rport:     s.RemotePort,
		netns:     s.NetNS,
		transport: s.Transport,
	}
}

// crossable reports whether a socket's peer may be in another namespace:
// loopback never leaves its namespace, every other address may be routed
// to one (veth pairs, bridges).
func crossable(s *model.Socket) bool {
	return !s.LocalIP.IsLoopback() && !s.RemoteIP.IsLoopback()
}

func add(m map[key]int32, k key, i int32) {
	if _, dup := m[k]; dup {
		m[k] = ambiguous
		return
	}
	m[k] = i
}

// candidate counts the records found with one wanted key: more than one
// makes the peer ambiguous, as in Link.
type candidate struct {
	n int32
	i int32
}

func (c *candidate) add(i int) {
	c.n++
	c.i = int32(i)
}

// LinkReports sets the Peer of each connection report whose other end is
// a record of records, the poll the reports were made from: what Link
// would set on the report's record, for a fraction of its cost when the
// reports are few (polls between two full reads, whose records the dedup
// window reduces to a handful of reports). One pass over the records with
// a lookup in a map of the reports' keys, a second only for a peer found
// across namespaces.
func (l *Linker) LinkReports(reports []model.Report, records []model.Record) {
	if l.want == nil {
		l.want, l.home = map[key]*candidate{}, map[key]*candidate{}
	}
	clear(l.want)
	clear(l.home)
	type pending struct{ same, across *candidate }
	wanted := make([]pending, len(reports))
	for i := range reports {
		r := &reports[i]
		r.Peer = nil
		if r.Kind != model.Connection {
			continue
		}
		k := keyOf(&r.Socket).swap()
		wanted[i].same = l.wanted(l.want, k)
		if crossable(&r.Socket) {
			k.netns = 0
			k.kind = acrossKind
			wanted[i].across = l.wanted(l.want, k)
		}
	}
	if len(l.want) == 0 {
		return
	}
	for i := range records {
		s := &records[i].Socket
		if records[i].Kind != model.Connection {
			continue
		}
		k := keyOf(s)
		if c, ok := l.want[k]; ok {
			c.add(i)
		}
		if crossable(s) {
			k.netns = 0
			k.kind = acrossKind
			if c, ok := l.want[k]; ok {
				c.add(i)
			}
		}
	}
	// A candidate across namespaces is the peer unless its own peer is in
	// its namespace (pairedAtHome): a second pass for those.
	for i := range reports {
		w := wanted[i]
		if w.same == nil || w.same.n > 0 || w.across == nil || w.across.n != 1 {
			continue
		}
		k := keyOf(&records[w.across.i].Socket).swap()
		l.wanted(l.home, k)
	}
	if len(l.home) > 0 {
		for i := range records {
			if records[i].Kind != model.Connection {
				continue
			}
			if c, ok := l.home[keyOf(&records[i].Socket)]; ok {
				c.add(i)
			}
		}
	}
	for i := range reports {
		w := wanted[i]
		switch {
		case w.same == nil:
		case w.same.n == 1:
			reports[i].Peer = records[w.same.i].Process
		case w.same.n > 1:
		case w.across != nil && w.across.n == 1:
			home := l.home[keyOf(&records[w.across.i].Socket).swap()]
			if home == nil || home.n == 0 {
				reports[i].Peer = records[w.across.i].Process
			}
		}
	}
}

// acrossKind marks the keys LinkReports looks up across namespaces (netns
// 0), apart from those of the agent's namespace when a source left it 0.
const acrossKind = model.Kind(0xff)

// wanted returns m's candidate for k, adding it.
func (l *Linker) wanted(m map[key]*candidate, k key) *candidate {
	if c, ok := m[k]; ok {
		return c
	}
	c := &candidate{}
	m[k] = c
	return c
}
