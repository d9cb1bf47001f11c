// Package classify turns sockets into listener and connection records with a
// direction: inbound when the local end matches a listener, else outbound.
package classify

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/connbeat/connbeat/model"
)

// OwnerFunc returns the process that holds a socket inode.
type OwnerFunc func(inode uint64) (*model.Process, int)

// Options tune classification.
type Options struct {
	// LocalConnections reports connections whose peer is a loopback address.
	LocalConnections bool
}

// endpoint is a listener's address within its network namespace: a
// listener accepts connections of its own namespace only.
type endpoint struct {
	ip    netip.Addr
	netns uint64
	port  uint16
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
func (c *Classifier) Classify(sockets []model.Socket, owner OwnerFunc, dst []model.Record) []model.Record {
	c.listeners = c.listeners[:0]
	clear(c.ports[:])
	for i := range sockets {
		s := &sockets[i]
		if s.State == model.StateListen {
			c.listeners = append(c.listeners, endpoint{ip: s.LocalIP, netns: s.NetNS, port: s.LocalPort})
			c.ports[s.LocalPort/64] |= 1 << (s.LocalPort % 64)
		}
	}
	slices.SortFunc(c.listeners, func(a, b endpoint) int { return cmp.Compare(a.port, b.port) })
	for i := range sockets {
		s := &sockets[i]
		rec := model.Record{Socket: *s}
		switch {
		case s.State == model.StateListen:
			rec.Kind, rec.Direction = model.Listener, model.Listening
		case s.State == model.StateClose || !s.RemoteIP.IsValid() || s.RemoteIP.IsUnspecified():
			continue
		default:
			if !c.opts.LocalConnections && s.RemoteIP.IsLoopback() {
				continue
			}
			rec.Kind, rec.Direction = model.Connection, model.Outbound
			if c.isListening(s.NetNS, s.LocalIP, s.LocalPort) {
				rec.Direction = model.Inbound
			}
		}
		if s.Inode != 0 && owner != nil {
			rec.Process, rec.Owners = owner(s.Inode)
		}
		dst = append(dst, rec)
	}
	return dst
}

// isListening reports whether a listener of network namespace netns
// accepts connections to ip:port: one bound to that address, to 0.0.0.0
// for IPv4 addresses, or to :: (dual-stack sockets accept IPv4 too, which
// the kernel lists in tcp6 as IPv4-mapped addresses that the source has
// already unmapped).
func (c *Classifier) isListening(netns uint64, ip netip.Addr, port uint16) bool {
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
		if l.netns != netns {
			continue
		}
		if l.ip == ip || l.ip == anyV6 || (is4 && l.ip == anyV4) {
			return true
		}
	}
	return false
}
