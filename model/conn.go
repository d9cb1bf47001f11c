package model

import "time"

// ConnEnd says how a connection ended.
type ConnEnd uint8

// Ways a connection ends.
const (
	// EndFIN is an orderly close.
	EndFIN ConnEnd = iota + 1
	// EndRST is a reset, sent or received.
	EndRST
	// EndTimeout is a UDP pair idle for longer than the flow timeout.
	EndTimeout
	// EndRefused is a connect the peer refused (RST to the SYN).
	EndRefused
	// EndFailed is a connect that failed otherwise (timeout, unreachable).
	EndFailed
)

func (e ConnEnd) String() string {
	switch e {
	case EndFIN:
		return "fin"
	case EndRST:
		return "rst"
	case EndTimeout:
		return "timeout"
	case EndRefused:
		return "refused"
	case EndFailed:
		return "failed"
	}
	return "unknown"
}

// ConnFlow is one ended connection's life as the event capture saw it:
// what a flow event reports.
type ConnFlow struct {
	// Socket is the local end: addresses, transport and namespace.
	Socket Socket
	// Direction is Inbound when the peer initiated it, else Outbound.
	Direction Direction
	// Process made (outbound) or accepted (inbound) the connection,
	// attributed in the kernel when it happened; nil when unknown.
	Process *Process
	// Start and End bound the connection's life.
	Start, End time.Time
	// Sent and Received count payload bytes and segments (datagrams for
	// UDP) from the local end's point of view.
	BytesSent, BytesReceived uint64
	SegsSent, SegsReceived   uint64
	// Retransmits counts retransmitted segments; SRTTMicros is the
	// smoothed round-trip time at close (TCP only).
	Retransmits uint32
	SRTTMicros  uint32
	Ended       ConnEnd
}
