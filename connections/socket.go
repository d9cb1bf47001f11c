// Package connections lists the host's TCP sockets through interchangeable
// sources (procfs today, netlink and eBPF later).
package connections

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

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

// Socket is one TCP socket as the kernel reports it. Addresses are unmapped:
// an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is stored as the IPv4 address.
type Socket struct {
	LocalIP    netip.Addr
	RemoteIP   netip.Addr
	LocalPort  uint16
	RemotePort uint16
	State      State
	// UID owns the socket (the creating process's effective uid).
	UID uint32
	// Inode identifies the socket in /proc/PID/fd links; 0 for sockets no
	// process holds any more (TIME_WAIT, orphans).
	Inode uint64
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

// Source lists the host's TCP sockets.
type Source interface {
	// Name says which source this is ("procfs", "netlink").
	Name() string
	// Sockets appends the current TCP sockets to dst and returns the result.
	// A source reuses its own buffers; the caller may reuse dst across calls.
	Sockets(ctx context.Context, dst []Socket) ([]Socket, error)
	// Close releases what the source holds open.
	Close() error
}

// UnavailableError says a source cannot run on this host (a missing kernel
// feature or privilege). Callers log it once and fall back.
type UnavailableError struct {
	Source string
	Err    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("socket source %s unavailable: %v", e.Source, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err says a source cannot run here.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}
