package netlink

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The request as the kernel's headers declare it, written out again here
// so that encoding/binary lays it out independently of wire.go: a mistake
// made in both marshal and unmarshal (which TestRoundTrips cannot see)
// shows as a difference with these bytes.

// kernelSockID is struct inet_diag_sockid (include/uapi/linux/inet_diag.h):
//
//	__be16 idiag_sport; __be16 idiag_dport;
//	__be32 idiag_src[4]; __be32 idiag_dst[4];
//	__u32 idiag_if; __u32 idiag_cookie[2];
type kernelSockID struct {
	Sport, Dport [2]byte  // network order
	Src, Dst     [16]byte // network order
	If           uint32
	Cookie       [2]uint32
}

// kernelReqV2 is struct inet_diag_req_v2:
//
//	__u8 sdiag_family; __u8 sdiag_protocol; __u8 idiag_ext; __u8 pad;
//	__u32 idiag_states; struct inet_diag_sockid id;
type kernelReqV2 struct {
	Family, Protocol, Ext, Pad uint8
	States                     uint32
	ID                         kernelSockID
}

// kernelReq is struct inet_diag_req, TCPDIAG_GETSOCK's request:
//
//	__u8 idiag_family; __u8 idiag_src_len; __u8 idiag_dst_len; __u8 idiag_ext;
//	struct inet_diag_sockid id; __u32 idiag_states; __u32 idiag_dbs;
type kernelReq struct {
	Family, SrcLen, DstLen, Ext uint8
	ID                          kernelSockID
	States, DBs                 uint32
}

// Values from the kernel's headers that golang.org/x/sys does not carry.
const (
	kernelTCPDiagGetSock = 18 // TCPDIAG_GETSOCK, include/uapi/linux/inet_diag.h
	kernelDiagInfo       = 2  // INET_DIAG_INFO, the same header's enum
)

// kernelAllStates is every TCP state, TCP_ESTABLISHED (1) to
// TCP_NEW_SYN_RECV (12) in include/net/tcp_states.h, as a state mask.
func kernelAllStates() uint32 {
	var m uint32
	for st := 1; st <= 12; st++ {
		m |= 1 << st
	}
	return m
}

// kernelDatagram lays out a netlink message of type typ holding body.
func kernelDatagram(t *testing.T, typ uint16, seq uint32, body any) []byte {
	t.Helper()
	h := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + binary.Size(body)),
		Type:  typ,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP,
		Seq:   seq,
	}
	var buf bytes.Buffer
	require.NoError(t, binary.Write(&buf, binary.NativeEndian, h))
	require.NoError(t, binary.Write(&buf, binary.NativeEndian, body))
	return buf.Bytes()
}

// TestRequestBytesAsKernelLayout compares the datagrams the source sends
// with the kernel's struct layout: the dump requests Open builds for each
// family and for TCPDIAG_GETSOCK, and one with a full socket id.
func TestRequestBytesAsKernelLayout(t *testing.T) {
	require.Equal(t, 56, binary.Size(kernelReqV2{}), "sizeof(struct inet_diag_req_v2)")
	require.Equal(t, 60, binary.Size(kernelReq{}), "sizeof(struct inet_diag_req)")
	infoExt := uint8(1 << (kernelDiagInfo - 1))

	src := netip.MustParseAddr("2001:db8::1").As16()
	dst := netip.MustParseAddr("2001:db8::2").As16()
	fullID := kernelSockID{Sport: [2]byte{0x1f, 0x90}, Dport: [2]byte{0x01, 0xbb}, Src: src, Dst: dst, If: 3, Cookie: [2]uint32{7, 8}}

	tests := []struct {
		name string
		req  request
		want []byte
	}{
		{
			name: "IPv4 dump",
			req:  request{Family: familyINET, Protocol: protoTCP, Ext: infoExt, States: allStates},
			want: kernelDatagram(t, unix.SOCK_DIAG_BY_FAMILY, 5, kernelReqV2{
				Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Ext: infoExt, States: kernelAllStates()}),
		},
		{
			name: "IPv6 dump",
			req:  request{Family: familyINET6, Protocol: protoTCP, States: allStates},
			want: kernelDatagram(t, unix.SOCK_DIAG_BY_FAMILY, 5, kernelReqV2{
				Family: unix.AF_INET6, Protocol: unix.IPPROTO_TCP, States: kernelAllStates()}),
		},
		{
			name: "probe",
			req:  request{Family: familyINET, Protocol: protoTCP},
			want: kernelDatagram(t, unix.SOCK_DIAG_BY_FAMILY, 5, kernelReqV2{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP}),
		},
		{
			name: "socket id",
			req: request{Family: familyINET6, Protocol: protoTCP, States: 1 << 10,
				ID: sockID{SPort: 8080, DPort: 443, Src: src, Dst: dst, If: 3, Cookie: [2]uint32{7, 8}}},
			want: kernelDatagram(t, unix.SOCK_DIAG_BY_FAMILY, 5, kernelReqV2{
				Family: unix.AF_INET6, Protocol: unix.IPPROTO_TCP, States: 1 << 10, ID: fullID}),
		},
		{
			name: "TCPDIAG_GETSOCK dump",
			req:  request{Compat: true, Ext: infoExt, States: allStates},
			want: kernelDatagram(t, kernelTCPDiagGetSock, 5, kernelReq{
				Family: unix.AF_INET, Ext: infoExt, States: kernelAllStates()}),
		},
		{
			name: "TCPDIAG_GETSOCK socket id",
			req: request{Compat: true, States: 2,
				ID: sockID{SPort: 8080, DPort: 443, Src: src, Dst: dst, If: 3, Cookie: [2]uint32{7, 8}}},
			want: kernelDatagram(t, kernelTCPDiagGetSock, 5, kernelReq{Family: unix.AF_INET, States: 2, ID: fullID}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.req.appendDatagram(nil, 5, flagDump))
		})
	}
}

// TestRequestBytesSpelledOut spells out the first bytes of the IPv6 dump
// request, the kernel's layout at a glance: family, protocol, extensions,
// padding, then the state mask in the machine's byte order.
func TestRequestBytesSpelledOut(t *testing.T) {
	r := request{Family: familyINET6, Protocol: protoTCP, Ext: 2, States: allStates}
	b := r.marshal(nil)
	assert.Equal(t, []byte{10, 6, 2, 0}, b[:4], "AF_INET6, IPPROTO_TCP, INET_DIAG_INFO's bit, pad")
	assert.Equal(t, uint32(0x1ffe), binary.NativeEndian.Uint32(b[4:8]), "states 1..12")
	assert.Equal(t, make([]byte, sockIDLen), b[8:], "no socket id")
}
