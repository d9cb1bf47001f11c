package model

import (
	"fmt"
	"net/netip"
	"time"
)

// FlowEvent says what happened to a conntrack entry.
type FlowEvent uint8

// Flow events, as ctnetlink reports them.
const (
	FlowNew FlowEvent = iota + 1
	FlowUpdate
	FlowDestroy
)

// String returns the event's name as `conntrack -E` prints it (NEW, UPDATE,
// DESTROY), which is also the seed collector's Type field.
func (e FlowEvent) String() string {
	switch e {
	case FlowNew:
		return "NEW"
	case FlowUpdate:
		return "UPDATE"
	case FlowDestroy:
		return "DESTROY"
	}
	return fmt.Sprintf("UNKNOWN(%d)", uint8(e))
}

// Tuple is one direction of a conntrack entry: the original tuple is what
// the first packet carried, the reply tuple what an answer is expected to
// carry; they differ where NAT rewrote the flow.
type Tuple struct {
	Src, Dst netip.Addr
	// Ports are 0 for protocols without them (ICMP, GRE).
	SrcPort, DstPort uint16
	// Proto is the IANA protocol number (6 tcp, 17 udp, 1 icmp, ...).
	Proto uint8
	// ICMP and ICMPv6 tuples carry the message type, code and echo id
	// instead of ports.
	ICMPType, ICMPCode uint8
	ICMPID             uint16
}

// FlowCounter counts one direction's packets and bytes (IP headers
// included). The kernel fills them only with nf_conntrack_acct on.
type FlowCounter struct {
	Packets, Bytes uint64
}

// Flow is one conntrack event: the entry's tuples, counters and times as
// the kernel sent them, and what connbeat joined to it.
type Flow struct {
	Event FlowEvent
	// ID is the kernel's id of the entry, the same in all its events.
	ID   uint32
	Zone uint16
	Mark uint32

	Original, Reply               Tuple
	OriginalCounter, ReplyCounter FlowCounter

	// Start and Stop are zero without nf_conntrack_timestamp; Stop is set
	// on DESTROY only.
	Start, Stop time.Time

	// SeenReply is false while no packet went back (conntrack's UNREPLIED);
	// Assured once the kernel saw enough traffic to keep the entry under
	// pressure.
	SeenReply, Assured bool
	// TCPState is conntrack's view of a TCP flow ("established",
	// "time_wait", ...); empty for other protocols and when not sent.
	TCPState string

	// Resync marks an event that connbeat made up after events were lost:
	// a NEW for an entry a table dump showed that no event announced, a
	// DESTROY for a tracked entry the dump no longer had.
	Resync bool

	// Direction is Outbound when the original source is a local address,
	// Inbound when the reply source is (the flow ends here), Forwarded
	// when neither is.
	Direction Direction
	// Process owns the flow's local socket (the originating one when both
	// ends are local); nil when no end is local or the owner is unknown.
	Process *Process
}

// ProtoName returns the protocol's name as conntrack prints it, "unknown"
// for one it does not name.
func ProtoName(proto uint8) string {
	switch proto {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 33:
		return "dccp"
	case 47:
		return "gre"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	}
	return "unknown"
}
