package netlink

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit/frames"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// appendMsg appends one netlink message with body to b.
func appendMsg(b []byte, typ, flags uint16, seq uint32, body []byte) []byte {
	h := header{Len: uint32(headerLen + len(body)), Type: typ, Flags: flags, Seq: seq}
	b = h.marshal(b)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// diagBody builds an inet_diag_msg with an optional INET_DIAG_INFO.
func diagBody(m message, info *model.TCPInfo) []byte {
	b := m.marshal(nil)
	if info != nil {
		payload := encodeTCPInfo(nil, info)
		b = binary.NativeEndian.AppendUint16(b, uint16(4+len(payload)))
		b = binary.NativeEndian.AppendUint16(b, attrInfo)
		b = append(b, payload...)
	}
	return b
}

func doneBody(code int32) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(code)) }

func v4msg(state uint8, src string, sport uint16, dst string, dport uint16) message {
	m := message{Family: familyINET, State: state, UID: 1000, Inode: 4242}
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(m.ID.Src[:], s[:])
	copy(m.ID.Dst[:], d[:])
	m.ID.SPort, m.ID.DPort = sport, dport
	return m
}

func v6msg(state uint8, src string, sport uint16, dst string, dport uint16) message {
	m := message{Family: familyINET6, State: state, UID: 33, Inode: 77}
	m.ID.Src = netip.MustParseAddr(src).As16()
	m.ID.Dst = netip.MustParseAddr(dst).As16()
	m.ID.SPort, m.ID.DPort = sport, dport
	return m
}

func TestRoundTrips(t *testing.T) {
	r := request{Family: familyINET6, Protocol: protoTCP, Ext: 2, States: allStates,
		ID: sockID{SPort: 80, DPort: 443, If: 3, Cookie: [2]uint32{7, 8}}}
	r.ID.Src[0], r.ID.Dst[15] = 0xfe, 1
	b := r.marshal(nil)
	require.Len(t, b, requestLen)
	var r2 request
	require.NoError(t, r2.unmarshal(b))
	assert.Equal(t, r, r2)

	// The same request as struct inet_diag_req (TCPDIAG_GETSOCK): ext in
	// byte 3, the socket id, then idiag_states and a zero idiag_dbs.
	r.Compat = true
	c := r.marshal(nil)
	require.Len(t, c, compatRequestLen)
	require.Equal(t, compatRequestLen, r.wireLen())
	assert.Equal(t, uint16(18 /* TCPDIAG_GETSOCK, include/uapi/linux/inet_diag.h */), r.msgType())
	assert.Equal(t, []byte{familyINET, 0, 0, 2}, c[:4])
	assert.Equal(t, b[8:8+sockIDLen], c[4:4+sockIDLen], "the same inet_diag_sockid")
	assert.Equal(t, uint32(allStates), binary.NativeEndian.Uint32(c[52:56]))
	assert.Zero(t, binary.NativeEndian.Uint32(c[56:60]))

	m := v6msg(1, "2001:db8::1", 1234, "2001:db8::2", 80)
	m.Timer, m.Retrans, m.Expires, m.RQueue, m.WQueue = 1, 2, 3, 4, 5
	b = m.marshal(nil)
	require.Len(t, b, messageLen)
	var m2 message
	require.NoError(t, m2.unmarshal(b))
	assert.Equal(t, m, m2)

	h := header{Len: 99, Type: msgTypeDiag, Flags: flagDumpIntr, Seq: 5, PID: 6}
	var h2 header
	require.NoError(t, h2.unmarshal(h.marshal(nil)))
	assert.Equal(t, h, h2)

	info := model.TCPInfo{RTTMicros: 1, RTTVarMicros: 2, Retransmits: 3, TotalRetransmits: 4,
		BytesAcked: 5 << 40, BytesReceived: 6 << 40, SegsIn: 7, SegsOut: 8}
	var info2 model.TCPInfo
	require.NoError(t, decodeTCPInfo(encodeTCPInfo(nil, &info), &info2))
	assert.Equal(t, info, info2)
}

// TestWireLayout checks the wire constants against the kernel's structs as
// golang.org/x/sys lays them out.
func TestWireLayout(t *testing.T) {
	var ti unix.TCPInfo
	assert.Equal(t, uintptr(tiRetransmits), unsafe.Offsetof(ti.Retransmits))
	assert.Equal(t, uintptr(tiRTT), unsafe.Offsetof(ti.Rtt))
	assert.Equal(t, uintptr(tiRTTVar), unsafe.Offsetof(ti.Rttvar))
	assert.Equal(t, uintptr(tiTotalRetrans), unsafe.Offsetof(ti.Total_retrans))
	assert.Equal(t, uintptr(tiBytesAcked), unsafe.Offsetof(ti.Bytes_acked))
	assert.Equal(t, uintptr(tiBytesReceived), unsafe.Offsetof(ti.Bytes_received))
	assert.Equal(t, uintptr(tiSegsOut), unsafe.Offsetof(ti.Segs_out))
	assert.Equal(t, uintptr(tiSegsIn), unsafe.Offsetof(ti.Segs_in))
	assert.Equal(t, unix.SizeofNlMsghdr, headerLen)
	assert.Equal(t, uint16(unix.SOCK_DIAG_BY_FAMILY), uint16(msgTypeDiag))
	assert.Equal(t, uint16(unix.NLM_F_DUMP_INTR), uint16(flagDumpIntr))
	assert.Equal(t, uint16(unix.NLM_F_DUMP), uint16(flagDump))
	assert.Equal(t, uint16(unix.NLMSG_DONE), uint16(msgTypeDone))
	assert.Equal(t, uint16(unix.NLMSG_ERROR), uint16(msgTypeError))
}

func TestFeed(t *testing.T) {
	info := &model.TCPInfo{RTTMicros: 50, BytesAcked: 10, BytesReceived: 20, SegsIn: 3, SegsOut: 4}
	est := v4msg(1, "10.0.0.1", 5000, "10.0.0.2", 80)
	listen := v6msg(10, "::", 22, "::", 0)
	mapped := v6msg(1, "::ffff:192.0.2.1", 8080, "::ffff:192.0.2.9", 4000)
	odd := est
	odd.Family = 7 // not an inet family: skipped
	badState := est
	badState.State = 13

	tests := []struct {
		name     string
		buf      []byte
		wantInfo bool
		want     []model.Socket
		done     bool
		intr     bool
		err      error
	}{
		{
			name: "sockets then done",
			buf: appendMsg(appendMsg(appendMsg(nil, msgTypeDiag, 0, 9, diagBody(est, nil)),
				msgTypeDiag, 0, 9, diagBody(listen, nil)), msgTypeDone, 0, 9, doneBody(0)),
			want: []model.Socket{
				{LocalIP: netip.MustParseAddr("10.0.0.1"), LocalPort: 5000, RemoteIP: netip.MustParseAddr("10.0.0.2"), RemotePort: 80, State: 1, UID: 1000, Inode: 4242},
				{LocalIP: netip.IPv6Unspecified(), LocalPort: 22, RemoteIP: netip.IPv6Unspecified(), State: 10, UID: 33, Inode: 77},
			},
			done: true,
		},
		{
			name: "ipv4-mapped addresses are unmapped",
			buf:  appendMsg(nil, msgTypeDiag, 0, 9, diagBody(mapped, nil)),
			want: []model.Socket{{LocalIP: netip.MustParseAddr("192.0.2.1"), LocalPort: 8080, RemoteIP: netip.MustParseAddr("192.0.2.9"), RemotePort: 4000, State: 1, UID: 33, Inode: 77}},
		},
		{
			name:     "tcp_info for connections, not listeners",
			buf:      appendMsg(appendMsg(nil, msgTypeDiag, 0, 9, diagBody(est, info)), msgTypeDiag, 0, 9, diagBody(listen, info)),
			wantInfo: true,
			want: []model.Socket{
				{LocalIP: netip.MustParseAddr("10.0.0.1"), LocalPort: 5000, RemoteIP: netip.MustParseAddr("10.0.0.2"), RemotePort: 80, State: 1, UID: 1000, Inode: 4242, Info: info},
				{LocalIP: netip.IPv6Unspecified(), LocalPort: 22, RemoteIP: netip.IPv6Unspecified(), State: 10, UID: 33, Inode: 77},
			},
		},
		{
			name: "tcp_info present but not asked for",
			buf:  appendMsg(nil, msgTypeDiag, 0, 9, diagBody(est, info)),
			want: []model.Socket{{LocalIP: netip.MustParseAddr("10.0.0.1"), LocalPort: 5000, RemoteIP: netip.MustParseAddr("10.0.0.2"), RemotePort: 80, State: 1, UID: 1000, Inode: 4242}},
		},
		{
			name: "other sequence numbers and families are skipped",
			buf: appendMsg(appendMsg(appendMsg(nil, msgTypeDiag, 0, 8, diagBody(est, nil)),
				msgTypeDiag, 0, 9, diagBody(odd, nil)), msgTypeDiag, 0, 9, diagBody(badState, nil)),
		},
		{
			name: "interrupted dump is flagged",
			buf:  appendMsg(nil, msgTypeDone, flagDumpIntr, 9, doneBody(0)),
			done: true, intr: true,
		},
		{
			name: "kernel error",
			buf:  appendMsg(nil, msgTypeError, 0, 9, doneBody(-int32(unix.ENOENT))),
			done: true, err: unix.ENOENT,
		},
		{
			name: "dump ended with an error",
			buf:  appendMsg(nil, msgTypeDone, 0, 9, doneBody(-int32(unix.EINTR))),
			done: true, err: unix.EINTR,
		},
		{
			name: "acknowledgement is not an error",
			buf:  appendMsg(nil, msgTypeError, 0, 9, doneBody(0)),
		},
		{name: "short header", buf: make([]byte, 10), err: errTruncated},
		{name: "length past the buffer", buf: appendMsg(nil, msgTypeDiag, 0, 9, diagBody(est, nil))[:60], err: errTruncated},
		{name: "short inet_diag_msg", buf: appendMsg(nil, msgTypeDiag, 0, 9, make([]byte, 40)), err: errTruncated},
		{name: "short nlmsgerr", buf: appendMsg(nil, msgTypeError, 0, 9, nil), err: errTruncated},
		{
			name:     "bad attribute length",
			buf:      appendMsg(nil, msgTypeDiag, 0, 9, append(est.marshal(nil), 0xff, 0, 2, 0)),
			wantInfo: true, err: errTruncated,
		},
		{
			name:     "short tcp_info",
			buf:      appendMsg(nil, msgTypeDiag, 0, 9, append(est.marshal(nil), 8, 0, 2, 0, 1, 2, 3, 4)),
			wantInfo: true, err: errTruncated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decoder{wantInfo: tt.wantInfo}
			d.reset(nil)
			done, err := d.feed(tt.buf, 9)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.done, done)
			assert.Equal(t, tt.intr, d.intr)
			assert.Equal(t, tt.want, d.sockets)
		})
	}
}

// TestTCPInfoOlderKernel decodes a tcp_info as kernels before 4.1 sent it:
// the fields they did not have stay zero.
func TestTCPInfoOlderKernel(t *testing.T) {
	full := encodeTCPInfo(nil, &model.TCPInfo{RTTMicros: 9, TotalRetransmits: 2, BytesAcked: 5, SegsIn: 1})
	var got model.TCPInfo
	require.NoError(t, decodeTCPInfo(full[:tcpInfoMinLen], &got))
	assert.Equal(t, model.TCPInfo{RTTMicros: 9, TotalRetransmits: 2}, got)
}

// TestFixture decodes a dump captured from a real kernel and compares it
// with what was decoded and checked against procfs at capture time.
func TestFixture(t *testing.T) {
	datagrams := frames.Read(t, fixtureDump)
	d := decoder{wantInfo: true}
	d.reset(nil)
	// The fixture holds the IPv4 dump then the IPv6 dump, each ended by
	// NLMSG_DONE; the sequence numbers are whatever the capture used.
	var h header
	dumps := 0
	for _, f := range datagrams {
		require.NoError(t, h.unmarshal(f))
		done, err := d.feed(f, h.Seq)
		require.NoError(t, err)
		if done {
			dumps++
		}
	}
	require.Equal(t, 2, dumps)
	assert.False(t, d.intr)
	sockettest.Sort(d.sockets)

	raw, err := os.ReadFile(fixtureGolden)
	require.NoError(t, err)
	var want []goldenSocket
	require.NoError(t, json.Unmarshal(raw, &want))
	assert.Equal(t, want, toGolden(d.sockets))

	// What the fixture is known to hold.
	states := map[string]int{}
	for _, s := range d.sockets {
		states[s.State.String()]++
		if s.State == model.StateEstablished {
			require.NotNil(t, s.Info, "%+v", s)
		}
	}
	assert.Equal(t, map[string]int{"listen": 4, "established": 6, "time_wait": 1}, states)
	assert.Contains(t, toGolden(d.sockets), goldenSocket{Local: "[::]:6002", Remote: "[::]:0", State: "listen", HasInode: true})
}

func TestInfoSlabGivesBack(t *testing.T) {
	var s infoSlab
	for range 10 * infoChunk {
		s.next()
	}
	require.Len(t, s.chunks, 10)
	s.reset()
	s.next()
	s.reset()
	assert.Len(t, s.chunks, 3, "keeps twice the last use plus one chunk")
}

// TestFeedUDP decodes a UDP dump: sockets carry the dump's transport, a
// bound one in CLOSE and a connected one in ESTABLISHED (IPv4-mapped
// addresses unmapped), never tcp_info even when asked for; a message in a
// state no UDP socket has is left out.
func TestFeedUDP(t *testing.T) {
	info := &model.TCPInfo{RTTMicros: 1}
	buf := appendMsg(nil, msgTypeDiag, 0, 5, diagBody(v4msg(7, "0.0.0.0", 53, "0.0.0.0", 0), nil))
	buf = appendMsg(buf, msgTypeDiag, 0, 5, diagBody(v6msg(1, "::ffff:127.0.0.1", 40000, "::ffff:127.0.0.2", 53), info))
	buf = appendMsg(buf, msgTypeDiag, 0, 5, diagBody(v4msg(10, "127.0.0.1", 54, "0.0.0.0", 0), nil))
	buf = appendMsg(buf, msgTypeDone, 0, 5, doneBody(0))
	d := decoder{wantInfo: true, transport: model.UDP}
	d.reset(nil)
	done, err := d.feed(buf, 5)
	require.NoError(t, err)
	assert.True(t, done)
	assert.Equal(t, []model.Socket{
		{Transport: model.UDP, LocalIP: netip.MustParseAddr("0.0.0.0"), RemoteIP: netip.MustParseAddr("0.0.0.0"),
			LocalPort: 53, State: model.StateClose, UID: 1000, Inode: 4242},
		{Transport: model.UDP, LocalIP: netip.MustParseAddr("127.0.0.1"), RemoteIP: netip.MustParseAddr("127.0.0.2"),
			LocalPort: 40000, RemotePort: 53, State: model.StateEstablished, UID: 33, Inode: 77},
	}, d.sockets)
}
