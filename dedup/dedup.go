// Package dedup suppresses records already reported within a time window,
// grouping the sockets that stand for the same service or peer.
package dedup

import (
	"net/netip"
	"time"

	"github.com/connbeat/connbeat/classify"
)

// Key is what makes two records the same report. Ephemeral ports are left
// out so that a client opening many connections yields one event:
//   - outbound:  pid, local ip, remote ip, remote port
//   - inbound:   local ip, local port, remote ip
//   - listener:  local ip, local port, pid
type Key struct {
	dir        classify.Direction
	pid        int32
	localIP    netip.Addr
	localPort  uint16
	remoteIP   netip.Addr
	remotePort uint16
}

// KeyOf returns the dedup key of a record.
func KeyOf(r *classify.Record) Key {
	k := Key{dir: r.Direction, localIP: r.Socket.LocalIP}
	var pid int32
	if r.Process != nil {
		pid = r.Process.PID
	}
	switch r.Direction {
	case classify.Outbound:
		k.pid, k.remoteIP, k.remotePort = pid, r.Socket.RemoteIP, r.Socket.RemotePort
	case classify.Inbound:
		k.localPort, k.remoteIP = r.Socket.LocalPort, r.Socket.RemoteIP
	default:
		k.localPort, k.pid = r.Socket.LocalPort, pid
	}
	return k
}

// Report is a record to send and the number of sockets it stands for.
type Report struct {
	classify.Record
	Sockets int
}

// Cache remembers when each key was last reported. Keys older than the
// window are dropped on every call, so its size is bounded by the number of
// distinct keys seen within one window, whatever the connection churn.
type Cache struct {
	window time.Duration
	sent   map[Key]time.Time
	counts map[Key]int
}

// New returns a cache with the given window (the `aggregation` option).
func New(window time.Duration) *Cache {
	return &Cache{window: window, sent: map[Key]time.Time{}, counts: map[Key]int{}}
}

// Len is the number of keys held.
func (c *Cache) Len() int { return len(c.sent) }

// Filter appends to dst one report per key of records that was not reported
// within the window before now. A key reported earlier whose socket still
// exists once the window has passed is reported again, so consumers know it
// is alive.
func (c *Cache) Filter(records []classify.Record, now time.Time, dst []Report) []Report {
	for k, t := range c.sent {
		if now.Sub(t) >= c.window {
			delete(c.sent, k)
		}
	}
	clear(c.counts)
	for i := range records {
		c.counts[KeyOf(&records[i])]++
	}
	for i := range records {
		k := KeyOf(&records[i])
		n, first := c.counts[k]
		if !first || n == 0 {
			continue
		}
		c.counts[k] = 0 // report each key once per call
		if _, recent := c.sent[k]; recent {
			continue
		}
		c.sent[k] = now
		dst = append(dst, Report{Record: records[i], Sockets: n})
	}
	return dst
}
