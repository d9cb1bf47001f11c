package model

import (
	"fmt"
	"net/netip"
)

// Transport is a socket's layer-4 protocol. The zero value is TCP, the
// transport every socket source reads today.
type Transport uint8

// Transports.
const (
	TCP Transport = iota
	UDP
)

// String returns the transport's name as ECS's network.transport spells it.
func (t Transport) String() string {
	switch t {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// State is a TCP state as numbered by the kernel (include/net/tcp_states.h).
type State uint8

// TCP states, numbered as in the kernel.
const (
	StateEstablished State = 1
	StateSynSent     State = 2
	StateSynRecv     State = 3
	StateFinWait1    State = 4
	StateFinWait2    State = 5
	StateTimeWait    State = 6
	StateClose       State = 7
	StateCloseWait   State = 8
	StateLastAck     State = 9
	StateListen      State = 10
	StateClosing     State = 11
	StateNewSynRecv  State = 12
)

var stateNames = [...]string{
	StateEstablished: "established",
	StateSynSent:     "syn_sent",
	StateSynRecv:     "syn_recv",
	StateFinWait1:    "fin_wait1",
	StateFinWait2:    "fin_wait2",
	StateTimeWait:    "time_wait",
	StateClose:       "close",
	StateCloseWait:   "close_wait",
	StateLastAck:     "last_ack",
	StateListen:      "listen",
	StateClosing:     "closing",
	StateNewSynRecv:  "new_syn_recv",
}

// String returns the state's lower-case name, as used in events.
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("unknown(%d)", uint8(s))
}

// Valid reports whether s is a state the kernel defines.
func (s State) Valid() bool { return s >= StateEstablished && s <= StateNewSynRecv }

// Socket is one socket as the kernel reports it. Addresses are unmapped:
// an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is stored as the IPv4
// address.
type Socket struct {
	LocalIP    netip.Addr
	RemoteIP   netip.Addr
	LocalPort  uint16
	RemotePort uint16
	// State is the kernel's sk_state. UDP has no states of its own: the
	// kernel keeps StateClose for an unconnected (bound) UDP socket and
	// StateEstablished for a connected one, and reports those.
	State     State
	Transport Transport
	// UID owns the socket (the creating process's effective uid).
	UID uint32
	// Inode identifies the socket in /proc/PID/fd links; 0 for sockets no
	// process holds any more (TIME_WAIT, orphans).
	Inode uint64
	// NetNS is the inode of the socket's network namespace, set by every
	// socket source (the agent's own namespace included); 0 only where
	// nothing read it. Two sockets with the same addresses in different
	// namespaces are different sockets.
	NetNS uint64
	// Info holds the kernel's tcp_info figures when the source can read them.
	Info *TCPInfo
}

// TCPInfo is the subset of the kernel's struct tcp_info that events carry.
type TCPInfo struct {
	RTTMicros        uint32
	RTTVarMicros     uint32
	Retransmits      uint32 // retransmits of the current unacknowledged segment
	TotalRetransmits uint32
	BytesAcked       uint64
	BytesReceived    uint64
	SegsIn           uint32
	SegsOut          uint32
}
