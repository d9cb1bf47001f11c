package bpfiter

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/connbeat/connbeat/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// record is one record's fields as the program writes them (program.go).
type record struct {
	family          uint16
	state, substate uint8
	lport, rport    uint16 // port numbers; rport is written in network order
	uid             uint32
	transport       model.Transport
	inode           uint64
	local, remote   [16]byte
}

// bytes encodes r per the layout in program.go.
func (r record) bytes() []byte {
	b := make([]byte, recLen)
	binary.NativeEndian.PutUint16(b[recFamily:], r.family)
	b[recState] = r.state
	b[recSubstate] = r.substate
	binary.NativeEndian.PutUint16(b[recLPort:], r.lport)
	binary.BigEndian.PutUint16(b[recRPort:], r.rport)
	binary.NativeEndian.PutUint32(b[recUID:], r.uid)
	b[recTransport] = uint8(r.transport)
	binary.NativeEndian.PutUint64(b[recInode:], r.inode)
	copy(b[recLocal:], r.local[:])
	copy(b[recRemote:], r.remote[:])
	return b
}

// addr16 is an address as the program copies it: all 16 bytes of an IPv6
// address, or the 4 bytes of an IPv4 one followed by zeros.
func addr16(s string) [16]byte {
	a := netip.MustParseAddr(s)
	if a.Is4() {
		var b [16]byte
		v4 := a.As4()
		copy(b[:], v4[:])
		return b
	}
	return a.As16()
}

// recordOf encodes a socket as the program would write it for a full
// socket in that state: decoding it must give the socket back. A socket
// with one IPv4 and one IPv6 address is an IPv6 one with a mapped address
// (a listener bound to ::ffff:127.0.0.1 has remote ::).
func recordOf(s model.Socket) []byte {
	r := record{
		family: afINET6, state: uint8(s.State), lport: s.LocalPort, rport: s.RemotePort,
		uid: s.UID, inode: s.Inode, local: s.LocalIP.As16(), remote: s.RemoteIP.As16(), transport: s.Transport,
	}
	if s.State == model.StateTimeWait {
		r.substate = stateTimeWait // only a timewait sock is in TIME_WAIT
	}
	if s.LocalIP.Is4() && s.RemoteIP.Is4() {
		r.family = afINET
		r.local, r.remote = addr16(s.LocalIP.String()), addr16(s.RemoteIP.String())
	}
	return r.bytes()
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestDecodeRecord decodes hand-built records of every kind the kernel
// gives, and records no kernel writes.
func TestDecodeRecord(t *testing.T) {
	// bytes 4-7 written by hand: local port 8080 in host (little-endian)
	// order, remote port 443 in network order.
	ports := record{family: afINET, state: 1, local: addr16("127.0.0.1"), remote: addr16("127.0.0.1")}.bytes()
	ports[4], ports[5], ports[6], ports[7] = 0x90, 0x1f, 0x01, 0xbb
	v4Tail := record{family: afINET, state: 1, lport: 1, rport: 2, local: addr16("10.0.0.1"), remote: addr16("10.0.0.2")}
	v4Tail.local[4], v4Tail.remote[15] = 0xff, 0xff // ignored for IPv4

	tests := []struct {
		name    string
		rec     []byte
		want    model.Socket
		wantErr string
	}{
		{
			name: "IPv4 established",
			rec: record{family: afINET, state: 1, lport: 40000, rport: 80, uid: 1000, inode: 12345,
				local: addr16("127.0.0.1"), remote: addr16("10.1.2.3")}.bytes(),
			want: model.Socket{LocalIP: ip("127.0.0.1"), RemoteIP: ip("10.1.2.3"), LocalPort: 40000, RemotePort: 80,
				State: model.StateEstablished, UID: 1000, Inode: 12345},
		},
		{
			name: "IPv4 reads four address bytes",
			rec:  v4Tail.bytes(),
			want: model.Socket{LocalIP: ip("10.0.0.1"), RemoteIP: ip("10.0.0.2"), LocalPort: 1, RemotePort: 2, State: model.StateEstablished},
		},
		{
			name: "IPv4 listener",
			rec:  record{family: afINET, state: 10, lport: 22, uid: 0, inode: 7}.bytes(),
			want: model.Socket{LocalIP: ip("0.0.0.0"), RemoteIP: ip("0.0.0.0"), LocalPort: 22, State: model.StateListen, Inode: 7},
		},
		{
			name: "IPv6, all 16 bytes",
			rec: record{family: afINET6, state: 8, lport: 8443, rport: 50001, uid: 33, inode: 1 << 40,
				local: addr16("2001:db8:1:2:3:4:5:6"), remote: addr16("fe80::aa:bb:cc:dd")}.bytes(),
			want: model.Socket{LocalIP: ip("2001:db8:1:2:3:4:5:6"), RemoteIP: ip("fe80::aa:bb:cc:dd"), LocalPort: 8443, RemotePort: 50001,
				State: model.StateCloseWait, UID: 33, Inode: 1 << 40},
		},
		{
			name: "IPv6 wildcard listener stays IPv6",
			rec:  record{family: afINET6, state: 10, lport: 80, inode: 9}.bytes(),
			want: model.Socket{LocalIP: ip("::"), RemoteIP: ip("::"), LocalPort: 80, State: model.StateListen, Inode: 9},
		},
		{
			name: "IPv4-mapped unmapped",
			rec: record{family: afINET6, state: 1, lport: 80, rport: 40000, uid: 5, inode: 6,
				local: addr16("::ffff:127.0.0.1"), remote: addr16("::ffff:192.0.2.7")}.bytes(),
			want: model.Socket{LocalIP: ip("127.0.0.1"), RemoteIP: ip("192.0.2.7"), LocalPort: 80, RemotePort: 40000,
				State: model.StateEstablished, UID: 5, Inode: 6},
		},
		{
			name: "listener bound to a mapped address",
			rec:  record{family: afINET6, state: 10, lport: 80, inode: 3, local: addr16("::ffff:127.0.0.1")}.bytes(),
			want: model.Socket{LocalIP: ip("127.0.0.1"), RemoteIP: ip("::"), LocalPort: 80, State: model.StateListen, Inode: 3},
		},
		{
			name: "TIME_WAIT",
			rec: record{family: afINET, state: stateTimeWait, substate: uint8(model.StateTimeWait), lport: 40000, rport: 80,
				uid: 1000, inode: 99, local: addr16("127.0.0.1"), remote: addr16("127.0.0.1")}.bytes(),
			want: model.Socket{LocalIP: ip("127.0.0.1"), RemoteIP: ip("127.0.0.1"), LocalPort: 40000, RemotePort: 80,
				State: model.StateTimeWait},
		},
		{
			name: "TIME_WAIT sock with substate FIN_WAIT2",
			rec: record{family: afINET6, state: stateTimeWait, substate: uint8(model.StateFinWait2), lport: 40000, rport: 80,
				local: addr16("::1"), remote: addr16("::1")}.bytes(),
			want: model.Socket{LocalIP: ip("::1"), RemoteIP: ip("::1"), LocalPort: 40000, RemotePort: 80,
				State: model.StateFinWait2},
		},
		{
			name: "NEW_SYN_RECV as SYN_RECV, uid and inode zeroed",
			rec: record{family: afINET, state: stateNewSynRecv, lport: 80, rport: 40000, uid: 1000, inode: 5,
				local: addr16("127.0.0.1"), remote: addr16("127.0.0.2")}.bytes(),
			want: model.Socket{LocalIP: ip("127.0.0.1"), RemoteIP: ip("127.0.0.2"), LocalPort: 80, RemotePort: 40000,
				State: model.StateSynRecv},
		},
		{
			name: "full socket in SYN_RECV keeps its owner",
			rec:  record{family: afINET, state: 3, lport: 80, rport: 1, uid: 7, inode: 8}.bytes(),
			want: model.Socket{LocalIP: ip("0.0.0.0"), RemoteIP: ip("0.0.0.0"), LocalPort: 80, RemotePort: 1,
				State: model.StateSynRecv, UID: 7, Inode: 8},
		},
		{
			name: "port byte orders",
			rec:  ports,
			want: model.Socket{LocalIP: ip("127.0.0.1"), RemoteIP: ip("127.0.0.1"), LocalPort: 8080, RemotePort: 443,
				State: model.StateEstablished},
		},
		{
			name: "UDP bound (CLOSE)",
			rec:  record{transport: model.UDP, family: afINET, state: 7, lport: 53, uid: 101, inode: 11, local: addr16("127.0.0.53")}.bytes(),
			want: model.Socket{Transport: model.UDP, LocalIP: ip("127.0.0.53"), RemoteIP: ip("0.0.0.0"), LocalPort: 53,
				State: model.StateClose, UID: 101, Inode: 11},
		},
		{
			name: "UDP connected, IPv4-mapped unmapped",
			rec: record{transport: model.UDP, family: afINET6, state: 1, lport: 40000, rport: 53, uid: 1, inode: 12,
				local: addr16("::ffff:127.0.0.1"), remote: addr16("::ffff:127.0.0.53")}.bytes(),
			want: model.Socket{Transport: model.UDP, LocalIP: ip("127.0.0.1"), RemoteIP: ip("127.0.0.53"), LocalPort: 40000, RemotePort: 53,
				State: model.StateEstablished, UID: 1, Inode: 12},
		},
		{
			name: "UDP IPv6 bound keeps uid and inode",
			rec:  record{transport: model.UDP, family: afINET6, state: 7, lport: 5353, uid: 7, inode: 13, local: addr16("::1")}.bytes(),
			want: model.Socket{Transport: model.UDP, LocalIP: ip("::1"), RemoteIP: ip("::"), LocalPort: 5353,
				State: model.StateClose, UID: 7, Inode: 13},
		},
		{name: "UDP in LISTEN", rec: record{transport: model.UDP, family: afINET, state: 10}.bytes(), wantErr: "udp socket state 10 (substate 0) unknown"},
		{name: "UDP in TIME_WAIT", rec: record{transport: model.UDP, family: afINET, state: stateTimeWait, substate: 6}.bytes(), wantErr: "udp socket state 6 (substate 6) unknown"},
		{name: "transport 2", rec: record{transport: 2, family: afINET, state: 1}.bytes(), wantErr: "transport 2 unknown"},
		{name: "family 0", rec: record{family: 0, state: 1}.bytes(), wantErr: "address family 0 unknown"},
		{name: "family AF_UNIX", rec: record{family: 1, state: 1}.bytes(), wantErr: "address family 1 unknown"},
		{name: "family in network order", rec: record{family: afINET << 8, state: 1}.bytes(), wantErr: "address family 512 unknown"},
		{name: "state 0", rec: record{family: afINET, state: 0}.bytes(), wantErr: "tcp socket state 0 (substate 0) unknown"},
		{name: "state 13", rec: record{family: afINET, state: 13}.bytes(), wantErr: "tcp socket state 13 (substate 0) unknown"},
		{name: "state 255", rec: record{family: afINET6, state: 255}.bytes(), wantErr: "tcp socket state 255 (substate 0) unknown"},
		{name: "TIME_WAIT without substate", rec: record{family: afINET, state: stateTimeWait}.bytes(), wantErr: "tcp socket state 6 (substate 0) unknown"},
		{
			name:    "TIME_WAIT with a substate no timewait sock has",
			rec:     record{family: afINET, state: stateTimeWait, substate: stateNewSynRecv}.bytes(),
			wantErr: "tcp socket state 6 (substate 12) unknown",
		},
		{
			name:    "TIME_WAIT substate ESTABLISHED",
			rec:     record{family: afINET, state: stateTimeWait, substate: 1}.bytes(),
			wantErr: "tcp socket state 6 (substate 1) unknown",
		},
		{name: "short record", rec: record{family: afINET, state: 1}.bytes()[:recLen-1], wantErr: "record of 55 bytes, want 56"},
		{name: "long record", rec: append(record{family: afINET, state: 1}.bytes(), 0), wantErr: "record of 57 bytes, want 56"},
		{name: "empty", rec: nil, wantErr: "record of 0 bytes, want 56"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRecord(tt.rec)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				assert.Zero(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestRecordOf checks the test's own encoder against the decoder on a
// socket of each family, so the fuzz test's round trip means something.
func TestRecordOf(t *testing.T) {
	for _, s := range []model.Socket{
		{LocalIP: ip("192.0.2.1"), RemoteIP: ip("198.51.100.2"), LocalPort: 1, RemotePort: 65535, State: model.StateLastAck, UID: 1, Inode: 2},
		{LocalIP: ip("2001:db8::1"), RemoteIP: ip("::1"), LocalPort: 65535, RemotePort: 1, State: model.StateClosing, UID: 3, Inode: 4},
		{LocalIP: ip("127.0.0.1"), RemoteIP: ip("::"), LocalPort: 80, State: model.StateListen, Inode: 5},
		{Transport: model.UDP, LocalIP: ip("::1"), RemoteIP: ip("::1"), LocalPort: 5, RemotePort: 6, State: model.StateEstablished, UID: 7, Inode: 8},
	} {
		rec := recordOf(s)
		got, err := decodeRecord(rec)
		require.NoError(t, err)
		assert.Equal(t, s, got)
		wantFamily := uint16(afINET6)
		if s.LocalIP.Is4() && s.RemoteIP.Is4() {
			wantFamily = afINET
		}
		assert.Equal(t, wantFamily, binary.NativeEndian.Uint16(rec))
	}
}
