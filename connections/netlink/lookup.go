package netlink

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// protoUDP is IPPROTO_UDP.
const protoUDP = 17

// noCookie is INET_DIAG_NOCOOKIE: an exact request carrying it matches a
// socket by its addresses alone.
const noCookie = ^uint32(0)

// Lookup finds one socket by its addresses with sock_diag's exact
// requests, without a dump: the conntrack join asks it for the socket at
// each local end of a flow. It keeps one NETLINK_SOCK_DIAG socket open and
// is not safe for concurrent use.
type Lookup struct {
	conn *conn // nil after a failed request; reopened by the next
	dec  decoder
}

// OpenLookup opens the netlink socket lookups are sent on.
func OpenLookup() (*Lookup, error) {
	c, err := dial()
	if err != nil {
		return nil, &model.UnavailableError{Source: Name, Err: err}
	}
	return &Lookup{conn: c}, nil
}

// Close releases the netlink socket.
func (l *Lookup) Close() error {
	if l.conn == nil {
		return nil
	}
	err := l.conn.close()
	l.conn = nil
	return err
}

// Find returns the socket of protocol proto (6 TCP or 17 UDP) whose local
// address is local and whose peer is remote; ok is false when the kernel
// has none. For TCP the kernel answers with the connected socket, else the
// listener that would accept remote's connection (a remote of 0.0.0.0:0
// asks for the listener alone); for UDP with the connected socket, else
// the one bound to local. Sockets of other network namespaces are not
// found.
func (l *Lookup) Find(proto uint8, local, remote netip.AddrPort) (s model.Socket, ok bool, err error) {
	r, err := exactRequest(proto, local, remote)
	if err != nil {
		return s, false, err
	}
	if l.conn == nil {
		if l.conn, err = dial(); err != nil {
			return s, false, err
		}
	}
	s, ok, err = l.ask(&r)
	if err != nil && !errors.Is(err, errNoSocket) {
		// An answer may still be on its way: start the next request on a
		// fresh socket rather than read it as that request's.
		l.conn.close()
		l.conn = nil
		return s, false, err
	}
	if proto == protoUDP {
		s.Transport = model.UDP
	}
	return s, ok, nil
}

// errNoSocket is the kernel's ENOENT answer: nothing matches.
var errNoSocket = errors.New("no such socket")

func (l *Lookup) ask(r *request) (model.Socket, bool, error) {
	seq, err := l.conn.send(r, 0)
	if err != nil {
		return model.Socket{}, false, err
	}
	for {
		buf, err := l.conn.recv()
		if err != nil {
			return model.Socket{}, false, err
		}
		l.dec.reset(l.dec.sockets[:0])
		answered, err := l.dec.feedOne(buf, seq)
		switch {
		case errors.Is(err, unix.ENOENT):
			return model.Socket{}, false, errNoSocket
		case err != nil:
			return model.Socket{}, false, fmt.Errorf("sock_diag lookup of %s: %w", describe(r), err)
		case !answered:
			continue // an answer to an earlier request
		case len(l.dec.sockets) == 0:
			return model.Socket{}, false, nil
		}
		return l.dec.sockets[0], true, nil
	}
}

// feedOne decodes the answer to the exact request numbered seq. answered
// is false when buf holds only messages of other requests.
func (d *decoder) feedOne(buf []byte, seq uint32) (answered bool, err error) {
	return eachAnswer(buf, seq, func(h header, body []byte) (bool, error) {
		switch h.Type {
		case msgTypeError:
			errno, err := nlmsgerr(body)
			if err != nil {
				return false, err
			}
			if errno != 0 {
				return true, errno
			}
			return true, nil
		case msgTypeDiag:
			return true, d.addAny(body)
		}
		return false, nil
	})
}

// addAny decodes one inet_diag_msg of any protocol: unlike a TCP dump's,
// a UDP socket's state is not a TCP state worth checking.
func (d *decoder) addAny(body []byte) error {
	var m message
	if err := m.unmarshal(body); err != nil {
		return err
	}
	s, _ := m.socket()
	if !s.LocalIP.IsValid() {
		return fmt.Errorf("socket of address family %d", m.Family)
	}
	d.sockets = append(d.sockets, s)
	return nil
}

// exactRequest builds the request for one socket. The kernel's UDP lookup
// reads the request's source as the peer and its destination as the local
// end (udp_dump_one: "src and dst are swapped for historical reasons");
// TCP's reads them the other way round.
func exactRequest(proto uint8, local, remote netip.AddrPort) (request, error) {
	r := request{Protocol: proto, States: ^uint32(0)}
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	switch {
	case local.Addr().Is4() && remote.Addr().Is4():
		r.Family = familyINET
	case local.Addr().Is6() && remote.Addr().Is6():
		r.Family = familyINET6
	default:
		return r, fmt.Errorf("sock_diag lookup: %s and %s are not of one address family", local, remote)
	}
	if proto != protoTCP && proto != protoUDP {
		return r, fmt.Errorf("sock_diag lookup: protocol %d is not tcp or udp", proto)
	}
	me, peer := local, remote
	if proto == protoUDP {
		me, peer = remote, local
	}
	r.ID.SPort, r.ID.DPort = me.Port(), peer.Port()
	src, dst := me.Addr().As16(), peer.Addr().As16()
	if r.Family == familyINET {
		src4, dst4 := me.Addr().As4(), peer.Addr().As4()
		src, dst = [16]byte{}, [16]byte{}
		copy(src[:], src4[:])
		copy(dst[:], dst4[:])
	}
	r.ID.Src, r.ID.Dst = src, dst
	r.ID.Cookie = [2]uint32{noCookie, noCookie}
	return r, nil
}

func describe(r *request) string {
	return fmt.Sprintf("protocol %d port %d -> %d", r.Protocol, r.ID.SPort, r.ID.DPort)
}
