package conntrack

import (
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/connbeat/connbeat/model"
)

// ipctnlMsgCtGet is IPCTNL_MSG_CT_GET, which with NLM_F_DUMP lists the
// conntrack table.
const ipctnlMsgCtGet = 1

// dumpTimeout bounds a dump: a kernel that never ends one must not stop
// the input for good.
const dumpTimeout = time.Minute

// dump lists the conntrack table of both address families and calls fn
// for each entry as it is decoded, so memory stays at one datagram
// whatever the table's size. Entries come as Event FlowNew. It returns how
// many messages did not decode. After an error the socket may hold the
// rest of the dump: close it.
func (s *socket) dump(fn func(f *model.Flow)) (undecoded int, err error) {
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: ipctnlMsgCtGet,
		Family:      netfilter.ProtoUnspec, // both IPv4 and IPv6
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return 0, fmt.Errorf("building the conntrack dump request: %w", err)
	}
	s.seq++
	req.Header.Length = uint32(nlHeaderLen + len(req.Data))
	req.Header.Sequence = s.seq
	b, err := req.MarshalBinary()
	if err != nil {
		return 0, fmt.Errorf("building the conntrack dump request: %w", err)
	}
	if err := s.send(b); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(dumpTimeout)
	var f model.Flow
	for {
		buf, err := s.recv(true, deadline)
		if errors.Is(err, errTimeout) {
			return undecoded, fmt.Errorf("conntrack dump unfinished after %s", dumpTimeout)
		}
		if err != nil {
			return undecoded, fmt.Errorf("reading the conntrack dump: %w", err)
		}
		done := false
		err = splitMessages(buf, func(m message) error {
			if m.Seq != s.seq {
				return nil // left over from an earlier dump
			}
			switch m.Type {
			case nlmsgDone:
				done = true
				return nil
			case nlmsgError:
				if err := errorCode(m); err != nil {
					return fmt.Errorf("the kernel refused the conntrack dump: %w", err)
				}
				return nil
			}
			ok, err := decodeFlow(m, &f)
			if err != nil {
				undecoded++
				return nil
			}
			if ok {
				f.Event = model.FlowNew
				fn(&f)
			}
			return nil
		})
		if err != nil {
			return undecoded, err
		}
		if done {
			return undecoded, nil
		}
	}
}
