package netlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/connbeat/connbeat/model"
)

// Netlink and sock_diag constants (include/uapi/linux/netlink.h,
// sock_diag.h, inet_diag.h). They are spelled out here, next to the structs
// they belong to, so the wire format reads in one place.
const (
	headerLen  = 16 // struct nlmsghdr
	requestLen = 56 // struct inet_diag_req_v2
	// compatRequestLen is struct inet_diag_req, the request of the older
	// TCPDIAG_GETSOCK dump.
	compatRequestLen = 60
	messageLen       = 72 // struct inet_diag_msg
	sockIDLen        = 48 // struct inet_diag_sockid

	msgTypeError = 0x2 // NLMSG_ERROR
	msgTypeDone  = 0x3 // NLMSG_DONE
	msgTypeDiag  = 20  // SOCK_DIAG_BY_FAMILY
	// msgTypeTCPDiag is TCPDIAG_GETSOCK: the kernel answers it with one
	// dump of IPv4 and IPv6 TCP sockets (family AF_UNSPEC), in messages of
	// this type with the same inet_diag_msg body.
	msgTypeTCPDiag = 18

	flagRequest  = 0x1   // NLM_F_REQUEST
	flagDump     = 0x300 // NLM_F_ROOT|NLM_F_MATCH
	flagDumpIntr = 0x10  // NLM_F_DUMP_INTR

	protoTCP = 6 // IPPROTO_TCP

	familyINET  = 2  // AF_INET
	familyINET6 = 10 // AF_INET6

	attrInfo = 2 // INET_DIAG_INFO: struct tcp_info
)

// errTruncated is wrapped by every decoder that finds fewer bytes than a
// length field promises.
var errTruncated = errors.New("truncated netlink data")

// align4 rounds n up to the 4-byte alignment of netlink messages and
// attributes (NLMSG_ALIGN, NLA_ALIGN).
func align4(n int) int { return (n + 3) &^ 3 }

// header is struct nlmsghdr. Its fields are in host byte order.
type header struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	PID   uint32
}

func (h *header) marshal(b []byte) []byte {
	b = binary.NativeEndian.AppendUint32(b, h.Len)
	b = binary.NativeEndian.AppendUint16(b, h.Type)
	b = binary.NativeEndian.AppendUint16(b, h.Flags)
	b = binary.NativeEndian.AppendUint32(b, h.Seq)
	return binary.NativeEndian.AppendUint32(b, h.PID)
}

func (h *header) unmarshal(b []byte) error {
	if len(b) < headerLen {
		return fmt.Errorf("nlmsghdr: %d of %d bytes: %w", len(b), headerLen, errTruncated)
	}
	h.Len = binary.NativeEndian.Uint32(b[0:4])
	h.Type = binary.NativeEndian.Uint16(b[4:6])
	h.Flags = binary.NativeEndian.Uint16(b[6:8])
	h.Seq = binary.NativeEndian.Uint32(b[8:12])
	h.PID = binary.NativeEndian.Uint32(b[12:16])
	return nil
}

// sockID is struct inet_diag_sockid. Ports and addresses are in network
// byte order on the wire; an IPv4 address fills the first 4 bytes.
type sockID struct {
	SPort, DPort uint16
	Src, Dst     [16]byte
	If           uint32
	Cookie       [2]uint32
}

func (id *sockID) marshal(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, id.SPort)
	b = binary.BigEndian.AppendUint16(b, id.DPort)
	b = append(b, id.Src[:]...)
	b = append(b, id.Dst[:]...)
	b = binary.NativeEndian.AppendUint32(b, id.If)
	b = binary.NativeEndian.AppendUint32(b, id.Cookie[0])
	return binary.NativeEndian.AppendUint32(b, id.Cookie[1])
}

// unmarshal reads a sockID from b, which the caller has checked holds
// sockIDLen bytes.
func (id *sockID) unmarshal(b []byte) {
	_ = b[sockIDLen-1]
	id.SPort = binary.BigEndian.Uint16(b[0:2])
	id.DPort = binary.BigEndian.Uint16(b[2:4])
	copy(id.Src[:], b[4:20])
	copy(id.Dst[:], b[20:36])
	id.If = binary.NativeEndian.Uint32(b[36:40])
	id.Cookie[0] = binary.NativeEndian.Uint32(b[40:44])
	id.Cookie[1] = binary.NativeEndian.Uint32(b[44:48])
}

// request is struct inet_diag_req_v2: dump the sockets of one family and
// protocol whose state bit is set in States, with the extensions in Ext
// (bit n-1 asks for attribute n). With Compat it is sent as the older
// struct inet_diag_req of a TCPDIAG_GETSOCK dump instead: TCP sockets of
// both families in one walk of the kernel's socket tables (Family and
// Protocol are then not sent).
type request struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	States   uint32
	ID       sockID
	Compat   bool
}

// transport is the transport of the sockets the request dumps.
func (r *request) transport() model.Transport {
	if !r.Compat && r.Protocol == protoUDP {
		return model.UDP
	}
	return model.TCP
}

// msgType is the netlink message type the request is sent as.
func (r *request) msgType() uint16 {
	if r.Compat {
		return msgTypeTCPDiag
	}
	return msgTypeDiag
}

// wireLen is the length of the marshalled request.
func (r *request) wireLen() int {
	if r.Compat {
		return compatRequestLen
	}
	return requestLen
}

// appendDatagram appends the whole dump request as it is sent: the
// netlink header, then the request.
func (r *request) appendDatagram(b []byte, seq uint32, flags uint16) []byte {
	h := header{Len: uint32(headerLen + r.wireLen()), Type: r.msgType(), Flags: flagRequest | flags, Seq: seq}
	return r.marshal(h.marshal(b))
}

func (r *request) marshal(b []byte) []byte {
	if r.Compat {
		// idiag_family (unused by the kernel here), src_len, dst_len, ext,
		// the socket id, idiag_states, idiag_dbs.
		b = append(b, familyINET, 0, 0, r.Ext)
		b = r.ID.marshal(b)
		b = binary.NativeEndian.AppendUint32(b, r.States)
		return binary.NativeEndian.AppendUint32(b, 0)
	}
	b = append(b, r.Family, r.Protocol, r.Ext, 0)
	b = binary.NativeEndian.AppendUint32(b, r.States)
	return r.ID.marshal(b)
}

// unmarshal reads an inet_diag_req_v2.
func (r *request) unmarshal(b []byte) error {
	if len(b) < requestLen {
		return fmt.Errorf("inet_diag_req_v2: %d of %d bytes: %w", len(b), requestLen, errTruncated)
	}
	r.Family, r.Protocol, r.Ext = b[0], b[1], b[2]
	r.States = binary.NativeEndian.Uint32(b[4:8])
	r.ID.unmarshal(b[8:])
	return nil
}

// message is struct inet_diag_msg, one socket of a dump.
type message struct {
	Family  uint8
	State   uint8
	Timer   uint8
	Retrans uint8
	ID      sockID
	Expires uint32
	RQueue  uint32
	WQueue  uint32
	UID     uint32
	Inode   uint32
}

func (m *message) marshal(b []byte) []byte {
	b = append(b, m.Family, m.State, m.Timer, m.Retrans)
	b = m.ID.marshal(b)
	for _, v := range [...]uint32{m.Expires, m.RQueue, m.WQueue, m.UID, m.Inode} {
		b = binary.NativeEndian.AppendUint32(b, v)
	}
	return b
}

func (m *message) unmarshal(b []byte) error {
	if len(b) < messageLen {
		return fmt.Errorf("inet_diag_msg: %d of %d bytes: %w", len(b), messageLen, errTruncated)
	}
	m.Family, m.State, m.Timer, m.Retrans = b[0], b[1], b[2], b[3]
	m.ID.unmarshal(b[4:52])
	m.Expires = binary.NativeEndian.Uint32(b[52:56])
	m.RQueue = binary.NativeEndian.Uint32(b[56:60])
	m.WQueue = binary.NativeEndian.Uint32(b[60:64])
	m.UID = binary.NativeEndian.Uint32(b[64:68])
	m.Inode = binary.NativeEndian.Uint32(b[68:72])
	return nil
}

// socket converts a message to the agent's model, unmapping IPv4-mapped
// IPv6 addresses as the procfs source does. ok is false for a family or
// state the kernel would not send in a TCP dump.
func (m *message) socket() (s model.Socket, ok bool) {
	switch m.Family {
	case familyINET:
		s.LocalIP = netip.AddrFrom4([4]byte(m.ID.Src[:4]))
		s.RemoteIP = netip.AddrFrom4([4]byte(m.ID.Dst[:4]))
	case familyINET6:
		s.LocalIP = netip.AddrFrom16(m.ID.Src).Unmap()
		s.RemoteIP = netip.AddrFrom16(m.ID.Dst).Unmap()
	default:
		return s, false
	}
	s.LocalPort, s.RemotePort = m.ID.SPort, m.ID.DPort
	s.State = model.State(m.State)
	s.UID = m.UID
	s.Inode = uint64(m.Inode)
	return s, s.State.Valid()
}

// findAttr returns the payload of the first attribute of type typ in b, a
// sequence of struct nlattr (rtattr) records.
func findAttr(b []byte, typ uint16) ([]byte, bool, error) {
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, false, fmt.Errorf("attribute header: %d of 4 bytes: %w", len(b), errTruncated)
		}
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) & 0x3fff // strip NLA_F_NESTED, NLA_F_NET_BYTEORDER
		if l < 4 || l > len(b) {
			return nil, false, fmt.Errorf("attribute length %d with %d bytes left: %w", l, len(b), errTruncated)
		}
		if t == typ {
			return b[4:l], true, nil
		}
		if a := align4(l); a < len(b) {
			b = b[a:]
		} else {
			break
		}
	}
	return nil, false, nil
}

// Offsets in struct tcp_info (include/uapi/linux/tcp.h). The kernel sends
// as much of the struct as it knows; older kernels send a shorter one, so
// each field is read only if the payload reaches it.
const (
	tiRetransmits      = 2
	tiRTT              = 68
	tiRTTVar           = 72
	tiTotalRetrans     = 100
	tiBytesAcked       = 120
	tiBytesReceived    = 128
	tiSegsOut          = 136
	tiSegsIn           = 140
	tcpInfoMinLen      = tiTotalRetrans + 4 // every kernel with inet_diag v2 sends this much
	tcpInfoEncodedSize = tiSegsIn + 4
)

// decodeTCPInfo reads the fields events carry from a tcp_info payload. A
// payload shorter than the oldest kernels send is an error.
func decodeTCPInfo(b []byte, dst *model.TCPInfo) error {
	if len(b) < tcpInfoMinLen {
		return fmt.Errorf("tcp_info: %d of at least %d bytes: %w", len(b), tcpInfoMinLen, errTruncated)
	}
	*dst = model.TCPInfo{
		Retransmits:      uint32(b[tiRetransmits]),
		RTTMicros:        binary.NativeEndian.Uint32(b[tiRTT:]),
		RTTVarMicros:     binary.NativeEndian.Uint32(b[tiRTTVar:]),
		TotalRetransmits: binary.NativeEndian.Uint32(b[tiTotalRetrans:]),
	}
	if len(b) >= tiBytesReceived+8 {
		dst.BytesAcked = binary.NativeEndian.Uint64(b[tiBytesAcked:])
		dst.BytesReceived = binary.NativeEndian.Uint64(b[tiBytesReceived:])
	}
	if len(b) >= tiSegsIn+4 {
		dst.SegsOut = binary.NativeEndian.Uint32(b[tiSegsOut:])
		dst.SegsIn = binary.NativeEndian.Uint32(b[tiSegsIn:])
	}
	return nil
}

// encodeTCPInfo is decodeTCPInfo's inverse for the fields it reads; the
// others are zero. Tests and benchmarks build dumps with it.
func encodeTCPInfo(b []byte, in *model.TCPInfo) []byte {
	start := len(b)
	b = append(b, make([]byte, tcpInfoEncodedSize)...)
	p := b[start:]
	p[tiRetransmits] = uint8(in.Retransmits)
	binary.NativeEndian.PutUint32(p[tiRTT:], in.RTTMicros)
	binary.NativeEndian.PutUint32(p[tiRTTVar:], in.RTTVarMicros)
	binary.NativeEndian.PutUint32(p[tiTotalRetrans:], in.TotalRetransmits)
	binary.NativeEndian.PutUint64(p[tiBytesAcked:], in.BytesAcked)
	binary.NativeEndian.PutUint64(p[tiBytesReceived:], in.BytesReceived)
	binary.NativeEndian.PutUint32(p[tiSegsOut:], in.SegsOut)
	binary.NativeEndian.PutUint32(p[tiSegsIn:], in.SegsIn)
	return b
}
