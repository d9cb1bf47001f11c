// Package dedup suppresses records already reported within a time window,
// grouping the sockets that stand for the same service or peer.
package dedup

import (
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/connbeat/connbeat/model"
)

// Key is what makes two records the same report. Ephemeral ports are left
// out so that a client opening many connections yields one event:
//   - outbound:  pid, local ip, remote ip, remote port
//   - inbound:   local ip, local port, remote ip
//   - listener:  local ip, local port, pid
//
// and every key holds the socket's network namespace and transport: the
// same addresses in two namespaces are two services or peers, and a TCP and
// a UDP socket on the same addresses are different services.
//
// Its fields are laid out without padding (pad is always zero) so that maps
// hash and compare it as one block of memory: Filter does a map operation
// per socket, every poll.
type Key struct {
	localIP    netip.Addr
	remoteIP   netip.Addr
	netns      uint64
	pid        int32
	localPort  uint16
	remotePort uint16
	dir        model.Direction
	transport  model.Transport
	pad        [6]byte
}

// KeyOf returns the dedup key of a record.
func KeyOf(r *model.Record) Key {
	k := Key{dir: r.Direction, transport: r.Socket.Transport, localIP: r.Socket.LocalIP, netns: r.Socket.NetNS}
	var pid int32
	if r.Process != nil {
		pid = r.Process.PID
	}
	switch r.Direction {
	case model.Outbound:
		k.pid, k.remoteIP, k.remotePort = pid, r.Socket.RemoteIP, r.Socket.RemotePort
	case model.Inbound:
		k.localPort, k.remoteIP = r.Socket.LocalPort, r.Socket.RemoteIP
	default:
		k.localPort, k.pid = r.Socket.LocalPort, pid
	}
	return k
}

// Cache remembers when each key was last reported. Keys older than the
// window are dropped on every call, so its size is bounded by the number of
// distinct keys seen within one window, whatever the connection churn.
//
// It remembers a key by a 64-bit hash under a seed of its own rather than
// by the key: a host whose short connections come from many addresses
// holds a window's worth of keys, and an entry of a hash and a time is a
// fifth of one of a key and a time. Two keys of one window would share a
// hash with a probability of about n²/2⁶⁵ for n keys (under one in ten
// billion for a hundred thousand keys), and the seed differs in every
// process, so no input can aim at it.
type Cache struct {
	window time.Duration
	seed   maphash.Seed
	// sent maps the hash of each key reported within the window to when
	// (Unix nanoseconds); expired is the last time it was expired at.
	sent    map[uint64]int64
	expired time.Time
	// index maps the hash of a key of the current call to its entry in
	// groups; both are reused between calls. Keys that share a hash are
	// one key to sent anyway.
	index  map[uint64]int32
	groups []group
}

// group is one key of a Filter call: its hash, its first record and how
// many share it.
type group struct {
	hash  uint64
	first int32
	n     int32
}

// New returns a cache with the given window (the `aggregation` option).
func New(window time.Duration) *Cache {
	return &Cache{window: window, seed: maphash.MakeSeed(), sent: map[uint64]int64{}, index: map[uint64]int32{}}
}

// Len is the number of keys held.
func (c *Cache) Len() int { return len(c.sent) }

// Filter appends to dst one report per key of records that was not reported
// within the window before now. A key reported earlier whose socket still
// exists once the window has passed is reported again, so consumers know it
// is alive.
func (c *Cache) Filter(records []model.Record, now time.Time, dst []model.Report) []model.Report {
	c.expire(now)
	// One map operation per record: group the records by key, in the
	// order of each key's first record.
	clear(c.index)
	c.groups = c.groups[:0]
	for i := range records {
		h := c.hash(&records[i])
		if g, ok := c.index[h]; ok {
			c.groups[g].n++
			continue
		}
		c.index[h] = int32(len(c.groups))
		c.groups = append(c.groups, group{hash: h, first: int32(i), n: 1})
	}
	for _, g := range c.groups {
		if c.seen(g.hash, now) {
			continue
		}
		dst = append(dst, model.Report{Record: records[g.first], Sockets: int(g.n)})
	}
	return dst
}

// FilterGroups is Filter for records already grouped by key (Group): it
// appends to dst each group whose key was not reported within the window
// before now.
func (c *Cache) FilterGroups(groups []model.Report, now time.Time, dst []model.Report) []model.Report {
	c.expire(now)
	for i := range groups {
		if c.seen(c.hash(&groups[i].Record), now) {
			continue
		}
		dst = append(dst, groups[i])
	}
	return dst
}

// hash is the hash of r's key that the cache remembers it by.
func (c *Cache) hash(r *model.Record) uint64 {
	return maphash.Comparable(c.seed, KeyOf(r))
}

// seen reports whether the key hashed to h was reported within the
// window; if not, it is reported at now.
func (c *Cache) seen(h uint64, now time.Time) bool {
	if _, recent := c.sent[h]; recent {
		return true
	}
	c.sent[h] = now.UnixNano()
	return false
}

// expire drops the keys reported a window or more before now. Calls at
// the same time as the last (the event capture's polls within a window
// all filter at its start) have nothing to drop: the walk is skipped.
func (c *Cache) expire(now time.Time) {
	if now.Equal(c.expired) {
		return
	}
	c.expired = now
	oldest := now.Add(-c.window).UnixNano()
	for h, t := range c.sent {
		if t <= oldest {
			delete(c.sent, h)
		}
	}
}

// Release drops the buffers a Filter call sized to its records, for a
// caller whose next calls are much smaller (the polls between two full
// reads of the event capture); the next call allocates what it needs.
func (c *Cache) Release() {
	c.index = map[uint64]int32{}
	c.groups = nil
}

// Grouped appends to dst one report per key of the last Filter call's
// records, reported or not: the key's first record and how many records
// share it, in the order of the keys' first records. records must be the
// records that call was given. FilterGroups of these groups reports what
// Filter of the records would: they are what a caller keeps to report an
// unchanged set of records again, a host's sockets falling into far fewer
// keys than sockets.
func (c *Cache) Grouped(records []model.Record, dst []model.Report) []model.Report {
	for _, g := range c.groups {
		dst = append(dst, model.Report{Record: records[g.first], Sockets: int(g.n)})
	}
	return dst
}
