package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// Netlink framing (include/uapi/linux/netlink.h).
const (
	nlHeaderLen  = 16
	nlmsgError   = 0x2
	nlmsgDone    = 0x3
	nlmFDumpIntr = 0x10
)

// errTruncated is wrapped by the splitter when a length field promises more
// bytes than there are.
var errTruncated = errors.New("truncated netlink data")

// message is one netlink message of a datagram; Data aliases the datagram.
type message struct {
	Type, Flags uint16
	Seq         uint32
	Data        []byte
}

// splitMessages calls fn for each netlink message in a datagram, checking
// every length before reading. The kernel sends one message per event
// datagram, and many per dump datagram.
func splitMessages(buf []byte, fn func(m message) error) error {
	for len(buf) > 0 {
		if len(buf) < nlHeaderLen {
			return fmt.Errorf("nlmsghdr: %d of %d bytes: %w", len(buf), nlHeaderLen, errTruncated)
		}
		l := binary.NativeEndian.Uint32(buf[0:4])
		if l < nlHeaderLen || uint64(l) > uint64(len(buf)) {
			return fmt.Errorf("nlmsghdr length %d with %d bytes left: %w", l, len(buf), errTruncated)
		}
		m := message{
			Type:  binary.NativeEndian.Uint16(buf[4:6]),
			Flags: binary.NativeEndian.Uint16(buf[6:8]),
			Seq:   binary.NativeEndian.Uint32(buf[8:12]),
			Data:  buf[nlHeaderLen:l],
		}
		if err := fn(m); err != nil {
			return err
		}
		if a := (int(l) + 3) &^ 3; a < len(buf) {
			buf = buf[a:]
		} else {
			buf = nil
		}
	}
	return nil
}

// errorCode reads the errno of an NLMSG_ERROR or NLMSG_DONE payload (0 for
// an acknowledgement or a clean end).
func errorCode(m message) error {
	if len(m.Data) < 4 {
		return fmt.Errorf("netlink error message: %d of 4 bytes: %w", len(m.Data), errTruncated)
	}
	if code := int32(binary.NativeEndian.Uint32(m.Data)); code < 0 {
		return unix.Errno(-code)
	}
	return nil
}

// decodeFlow decodes one ctnetlink message with ti-mo/conntrack's
// attribute decoder and converts it to the model. ok is false for a
// message that is not about a conntrack entry (an expectation).
func decodeFlow(m message, dst *model.Flow) (ok bool, err error) {
	var ev ct.Event
	err = ev.Unmarshal(netlink.Message{
		Header: netlink.Header{
			Length:   uint32(nlHeaderLen + len(m.Data)),
			Type:     netlink.HeaderType(m.Type),
			Flags:    netlink.HeaderFlags(m.Flags),
			Sequence: m.Seq,
		},
		Data: m.Data,
	})
	if err != nil {
		return false, err
	}
	if ev.Flow == nil {
		return false, nil
	}
	*dst = model.Flow{}
	switch ev.Type {
	case ct.EventNew:
		dst.Event = model.FlowNew
	case ct.EventUpdate:
		dst.Event = model.FlowUpdate
	case ct.EventDestroy:
		dst.Event = model.FlowDestroy
	default:
		return false, nil
	}
	convert(ev.Flow, dst)
	if !dst.Original.Src.IsValid() || !dst.Reply.Src.IsValid() {
		return false, fmt.Errorf("conntrack entry %d without its original and reply tuples", dst.ID)
	}
	return true, nil
}

// convert copies what events report of a decoded entry.
func convert(f *ct.Flow, dst *model.Flow) {
	dst.ID = f.ID
	dst.Zone = f.Zone
	dst.Mark = f.Mark
	dst.Original = tuple(&f.TupleOrig)
	dst.Reply = tuple(&f.TupleReply)
	dst.OriginalCounter = model.FlowCounter{Packets: f.CountersOrig.Packets, Bytes: f.CountersOrig.Bytes}
	dst.ReplyCounter = model.FlowCounter{Packets: f.CountersReply.Packets, Bytes: f.CountersReply.Bytes}
	dst.Start, dst.Stop = f.Timestamp.Start, f.Timestamp.Stop
	dst.SeenReply = f.Status.SeenReply()
	dst.Assured = f.Status.Assured()
	if f.ProtoInfo.TCP != nil {
		dst.TCPState = tcpStateName(f.ProtoInfo.TCP.State)
	}
}

func tuple(t *ct.Tuple) model.Tuple {
	out := model.Tuple{
		Src:   t.IP.SourceAddress.Unmap(),
		Dst:   t.IP.DestinationAddress.Unmap(),
		Proto: t.Proto.Protocol,
	}
	if p := t.Proto.Protocol; p == unix.IPPROTO_ICMP || p == unix.IPPROTO_ICMPV6 {
		out.ICMPType, out.ICMPCode, out.ICMPID = t.Proto.ICMPType, t.Proto.ICMPCode, t.Proto.ICMPID
	} else {
		out.SrcPort, out.DstPort = t.Proto.SourcePort, t.Proto.DestinationPort
	}
	return out
}

// tcpStates are conntrack's TCP states (enum tcp_conntrack), in the
// lower case connbeat's other events use for socket states.
var tcpStates = [...]string{
	"none", "syn_sent", "syn_recv", "established", "fin_wait",
	"close_wait", "last_ack", "time_wait", "close", "syn_sent2",
}

func tcpStateName(s uint8) string {
	if int(s) < len(tcpStates) {
		return tcpStates[s]
	}
	return fmt.Sprintf("unknown(%d)", s)
}
