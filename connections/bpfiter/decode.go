package bpfiter

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/connbeat/connbeat/model"
)

// decodeRecord turns one record of the programs into a socket, reporting
// sockets as the netlink and procfs sources do: a pending connection
// (NEW_SYN_RECV) as SYN_RECV with uid and inode 0, a TIME_WAIT socket with
// the state it stands for, IPv4-mapped addresses unmapped; a UDP socket
// in CLOSE (bound) or ESTABLISHED (connected).
func decodeRecord(rec []byte) (model.Socket, error) {
	if len(rec) != recLen {
		return model.Socket{}, fmt.Errorf("record of %d bytes, want %d", len(rec), recLen)
	}
	s := model.Socket{
		Transport:  model.Transport(rec[recTransport]),
		State:      model.State(rec[recState]),
		LocalPort:  binary.NativeEndian.Uint16(rec[recLPort:]),
		RemotePort: binary.BigEndian.Uint16(rec[recRPort:]),
		UID:        binary.NativeEndian.Uint32(rec[recUID:]),
		Inode:      binary.NativeEndian.Uint64(rec[recInode:]),
	}
	switch {
	case s.Transport == model.UDP:
		// The udp iterator visits full sockets only, in CLOSE or
		// ESTABLISHED; HasState below refuses any other state.
	case s.Transport != model.TCP:
		return model.Socket{}, fmt.Errorf("transport %d unknown", rec[recTransport])
	case s.State == stateTimeWait:
		// A timewait sock stands for TIME_WAIT or FIN_WAIT2 (the kernel's
		// tcp_time_wait callers); any other substate is not the kernel's.
		s.State = 0
		if sub := model.State(rec[recSubstate]); sub == model.StateTimeWait || sub == model.StateFinWait2 {
			s.State = sub
		}
		s.UID, s.Inode = 0, 0
	case s.State == stateNewSynRecv:
		s.State = model.StateSynRecv
		s.UID, s.Inode = 0, 0
	}
	if !s.Transport.HasState(s.State) {
		return model.Socket{}, fmt.Errorf("%s socket state %d (substate %d) unknown", s.Transport, rec[recState], rec[recSubstate])
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
