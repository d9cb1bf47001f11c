// Package classify turns sockets into listener and connection records with a
// direction: inbound when the local end matches a listener, else outbound.
package classify

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/procs"
)

// Kind says what a record describes.
type Kind uint8

// Record kinds.
const (
	Listener Kind = iota + 1
	Connection
)

func (k Kind) String() string {
	switch k {
	case Listener:
		return "listener"
	case Connection:
		return "connection"
	}
	return "unknown"
}

// Direction of a record, seen from this host.
type Direction uint8

// Directions.
const (
	Listening Direction = iota + 1
	Inbound
	Outbound
)

func (d Direction) String() string {
	switch d {
	case Listening:
		return "listening"
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return "unknown"
}

// Record is one classified socket with its owner, if one could be read.
type Record struct {
	Kind      Kind
	Direction Direction
	Socket    connections.Socket
	Process   *procs.Process // nil when the owner is unknown or unreadable
	// Owners is how many processes hold the socket (forked workers share
	// listeners); Process is the topmost of them.
	Owners int
}

// OwnerFunc returns the process that holds a socket inode.
type OwnerFunc func(inode uint64) (*procs.Process, int)

// Options tune classification.
type Options struct {
	// LocalConnections reports connections whose peer is a loopback address.
	LocalConnections bool
}

type endpoint struct {
	ip   netip.Addr
	port uint16
}

// Classifier keeps its listener set between calls to avoid reallocating it.
type Classifier struct {
	opts Options
	// listeners of the current call, sorted by port: a host has few, and
	// a binary search over them beats hashing a 24-byte address for every
	// connection to a listening port (half the sockets of a busy server).
	listeners []endpoint
	// ports has a bit set for every port some listener is bound to: most
	// connections' local port (an ephemeral one) is not, which settles
	// their direction without a map lookup.
	ports [1 << 16 / 64]uint64
}

// New returns a Classifier.
func New(opts Options) *Classifier {
	return &Classifier{opts: opts}
}

var (
	anyV4 = netip.IPv4Unspecified()
	anyV6 = netip.IPv6Unspecified()
)

// Classify appends a record for each reportable socket to dst. Sockets in
// the CLOSE state (not bound to a peer, not listening) are skipped.
func (c *Classifier) Classify(sockets []connections.Socket, owner OwnerFunc, dst []Record) []Record {
	c.listeners = c.listeners[:0]
	clear(c.ports[:])
	for i := range sockets {
		s := &sockets[i]
		if s.State == connections.StateListen {
			c.listeners = append(c.listeners, endpoint{ip: s.LocalIP, port: s.LocalPort})
			c.ports[s.LocalPort/64] |= 1 << (s.LocalPort % 64)
		}
	}
	slices.SortFunc(c.listeners, func(a, b endpoint) int { return cmp.Compare(a.port, b.port) })
	for i := range sockets {
		s := &sockets[i]
		rec := Record{Socket: *s}
		switch {
		case s.State == connections.StateListen:
			rec.Kind, rec.Direction = Listener, Listening
		case s.State == connections.StateClose || !s.RemoteIP.IsValid() || s.RemoteIP.IsUnspecified():
			continue
		default:
			if !c.opts.LocalConnections && s.RemoteIP.IsLoopback() {
				continue
			}
			rec.Kind, rec.Direction = Connection, Outbound
			if c.isListening(s.LocalIP, s.LocalPort) {
				rec.Direction = Inbound
			}
		}
		if s.Inode != 0 && owner != nil {
			rec.Process, rec.Owners = owner(s.Inode)
		}
		dst = append(dst, rec)
	}
	return dst
}

// isListening reports whether a listener accepts connections to ip:port: one
// bound to that address, to 0.0.0.0 for IPv4 addresses, or to :: (dual-stack
// sockets accept IPv4 too, which the kernel lists in tcp6 as IPv4-mapped
// addresses that the source has already unmapped).
func (c *Classifier) isListening(ip netip.Addr, port uint16) bool {
	if c.ports[port/64]&(1<<(port%64)) == 0 {
		return false
	}
	lo, hi := 0, len(c.listeners)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if c.listeners[mid].port < port {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	is4 := ip.Is4()
	for _, l := range c.listeners[lo:] {
		if l.port != port {
			break
		}
		if l.ip == ip || l.ip == anyV6 || (is4 && l.ip == anyV4) {
			return true
		}
	}
	return false
}
