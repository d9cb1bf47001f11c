package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/connbeat/connbeat/model"
)

// The ring buffer record the programs write (struct record in
// capture.bpf.c), in the machine's byte order; addresses in network
// order, ports in host order:
//
//	0   u8  type (recOpen ...)
//	1   u8  family (AF_INET, AF_INET6)
//	2   u8  the TCP state the socket left (close: how it ended)
//	3   u8  flags (flagPassive ...)
//	4   u16 local port
//	6   u16 remote port
//	8   u32 tgid      12 u32 uid
//	16  s32 sk_err    20 u32 network namespace inode
//	24  u64 socket cookie
//	32  u64 cgroup id
//	40  u64 start, ns of CLOCK_MONOTONIC (0: not seen)
//	48  u64 time of the record, ns of CLOCK_MONOTONIC
//	56  [16] local address (IPv4: the first 4 bytes)
//	72  [16] remote address
//	88  [16] comm, NUL-padded
//	104 u64 bytes sent (acknowledged by the peer)
//	112 u64 bytes received
//	120 u32 segments sent  124 u32 segments received
//	128 u32 retransmitted segments  132 u32 smoothed RTT, microseconds
const recordLen = 136

// Record types.
const (
	recOpen     = 1
	recClose    = 2
	recListen   = 3
	recUnlisten = 4
	recUDP      = 5
)

// Record flags.
const (
	flagPassive = 1
	flagOwner   = 2
	flagRecv    = 4
	flagConnect = 8
)

const (
	afINET  = 2
	afINET6 = 10
)

// Owner is the process the kernel saw make a connection (or hold its
// listener), read at that moment.
type Owner struct {
	PID    int32
	UID    uint32
	Cgroup uint64
	Comm   string
}

// record is one decoded ring buffer record.
type record struct {
	typ      uint8
	oldState model.State
	flags    uint8
	owner    Owner // PID 0: unknown
	skErr    int32
	cookie   uint64
	start    uint64 // monotonic ns, 0 when unknown
	ts       uint64 // monotonic ns
	sock     model.Socket
	counters counters
}

// counters are a TCP connection's totals at close.
type counters struct {
	bytesSent, bytesReceived uint64
	segsSent, segsReceived   uint32
	retrans, srttMicros      uint32
}

// decodeRecord decodes one record. It checks the length, type, family
// and state, so that a record from a mismatched program, or garbage,
// is an error and never a socket with made-up fields.
func decodeRecord(b []byte, order binary.ByteOrder, r *record) error {
	return decodeRecordNames(b, order, r, nil)
}

// decodeRecordNames is decodeRecord taking process names from nm (nil:
// a string of its own for each record).
func decodeRecordNames(b []byte, order binary.ByteOrder, r *record, nm *names) error {
	if len(b) != recordLen {
		return fmt.Errorf("capture record of %d bytes, want %d", len(b), recordLen)
	}
	*r = record{typ: b[0], oldState: model.State(b[2]), flags: b[3]}
	if r.typ < recOpen || r.typ > recUDP {
		return fmt.Errorf("capture record of unknown type %d", r.typ)
	}
	if r.oldState != 0 && !r.oldState.Valid() {
		return fmt.Errorf("capture record with unknown TCP state %d", b[2])
	}
	var err error
	r.sock.LocalIP, err = addr(b[1], b[56:72])
	if err != nil {
		return err
	}
	r.sock.RemoteIP, _ = addr(b[1], b[72:88])
	r.sock.LocalPort = order.Uint16(b[4:])
	r.sock.RemotePort = order.Uint16(b[6:])
	r.sock.NetNS = uint64(order.Uint32(b[20:]))
	if r.typ == recUDP {
		r.sock.Transport = model.UDP
	}
	if r.flags&flagOwner != 0 {
		r.owner = Owner{
			PID:    int32(order.Uint32(b[8:])),
			UID:    order.Uint32(b[12:]),
			Cgroup: order.Uint64(b[32:]),
			Comm:   nm.get(b[88:104]),
		}
		if r.owner.PID <= 0 {
			return fmt.Errorf("capture record with owner pid %d", r.owner.PID)
		}
		r.sock.UID = r.owner.UID
	}
	r.skErr = int32(order.Uint32(b[16:]))
	r.cookie = order.Uint64(b[24:])
	r.start = order.Uint64(b[40:])
	r.ts = order.Uint64(b[48:])
	r.counters = counters{
		bytesSent:     order.Uint64(b[104:]),
		bytesReceived: order.Uint64(b[112:]),
		segsSent:      order.Uint32(b[120:]),
		segsReceived:  order.Uint32(b[124:]),
		retrans:       order.Uint32(b[128:]),
		srttMicros:    order.Uint32(b[132:]),
	}
	return nil
}

// addr decodes an address of the family; IPv4-mapped IPv6 addresses are
// unmapped, as every socket source does.
func addr(family uint8, b []byte) (netip.Addr, error) {
	switch family {
	case afINET:
		return netip.AddrFrom4([4]byte(b[:4])), nil
	case afINET6:
		return netip.AddrFrom16([16]byte(b[:16])).Unmap(), nil
	}
	return netip.Addr{}, fmt.Errorf("capture record of unknown address family %d", family)
}

// maxNames bounds the process names a names keeps; past it, it starts
// over.
const maxNames = 4096

// names interns the NUL-terminated process names of records: a host runs
// few programs, and a string for each record would be garbage at once.
type names struct{ m map[string]string }

// get returns the name in b; a nil names makes a new string.
func (n *names) get(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if n == nil {
		return string(b)
	}
	if s, ok := n.m[string(b)]; ok {
		return s
	}
	if n.m == nil || len(n.m) >= maxNames {
		n.m = make(map[string]string)
	}
	s := string(b)
	n.m[s] = s
	return s
}

// endOf says how a TCP connection that left oldState for CLOSE with the
// socket error skErr ended.
func endOf(oldState model.State, skErr int32) model.ConnEnd {
	const (
		econnrefused = 111
		econnreset   = 104
		epipe        = 32
	)
	switch {
	case oldState == model.StateSynSent && skErr == econnrefused:
		return model.EndRefused
	case oldState == model.StateSynSent:
		return model.EndFailed
	case skErr == econnreset || skErr == epipe:
		return model.EndRST
	case oldState == model.StateEstablished || oldState == model.StateCloseWait || oldState == model.StateSynRecv:
		// Closed without a FIN exchange: a reset (sent by close() with
		// unread data, or by SO_LINGER 0) or an abort.
		return model.EndRST
	}
	return model.EndFIN
}

// comm returns the NUL-terminated process name in b, a string of its own.
func comm(b []byte) string { return (*names)(nil).get(b) }
