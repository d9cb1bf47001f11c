package bpfiter

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/connbeat/connbeat/model"
)

// decodeRecord turns one record of the program into a socket, reporting
// sockets as the netlink and procfs sources do: a pending connection
// (NEW_SYN_RECV) as SYN_RECV with uid and inode 0, a TIME_WAIT socket with
// the state it stands for, IPv4-mapped addresses unmapped.
func decodeRecord(rec []byte) (model.Socket, error) {
	if len(rec) != recLen {
		return model.Socket{}, fmt.Errorf("record of %d bytes, want %d", len(rec), recLen)
	}
	s := model.Socket{
		State:      model.State(rec[recState]),
		LocalPort:  binary.NativeEndian.Uint16(rec[recLPort:]),
		RemotePort: binary.BigEndian.Uint16(rec[recRPort:]),
		UID:        binary.NativeEndian.Uint32(rec[recUID:]),
		Inode:      binary.NativeEndian.Uint64(rec[recInode:]),
	}
	switch s.State {
	case stateTimeWait:
		// A timewait sock stands for TIME_WAIT or FIN_WAIT2 (the kernel's
		// tcp_time_wait callers); any other substate is not the kernel's.
		s.State = 0
		if sub := model.State(rec[recSubstate]); sub == model.StateTimeWait || sub == model.StateFinWait2 {
			s.State = sub
		}
		s.UID, s.Inode = 0, 0
	case stateNewSynRecv:
		s.State = model.StateSynRecv
		s.UID, s.Inode = 0, 0
	}
	if !s.State.Valid() {
		return model.Socket{}, fmt.Errorf("socket state %d (substate %d) unknown", rec[recState], rec[recSubstate])
	}
	switch family := binary.NativeEndian.Uint16(rec[recFamily:]); family {
	case afINET:
		s.LocalIP = netip.AddrFrom4([4]byte(rec[recLocal:]))
		s.RemoteIP = netip.AddrFrom4([4]byte(rec[recRemote:]))
	case afINET6:
		s.LocalIP = netip.AddrFrom16([16]byte(rec[recLocal:])).Unmap()
		s.RemoteIP = netip.AddrFrom16([16]byte(rec[recRemote:])).Unmap()
	default:
		return model.Socket{}, fmt.Errorf("address family %d unknown", family)
	}
	return s, nil
}
