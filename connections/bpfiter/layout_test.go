package bpfiter

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// kernelStructs returns the structs layoutFrom reads, shaped as an x86-64
// kernel has them: sock_common's address and port pairs inside anonymous
// unions of anonymous structs, a bitfield, qualified and typedef'd types.
func kernelStructs() map[string]*btf.Struct {
	u8 := &btf.Int{Name: "unsigned char", Size: 1}
	u16 := &btf.Int{Name: "short unsigned int", Size: 2}
	u32 := &btf.Int{Name: "unsigned int", Size: 4}
	u64 := &btf.Int{Name: "long long unsigned int", Size: 8}
	be16 := &btf.Typedef{Name: "__be16", Type: u16}
	be32 := &btf.Typedef{Name: "__be32", Type: u32}
	in6 := &btf.Struct{Name: "in6_addr", Size: 16, Members: []btf.Member{
		{Name: "s6_addr", Type: &btf.Array{Index: u32, Type: u8, Nelems: 16}},
	}}
	pair := func(size uint32, whole string, wholeType btf.Type, a, b string, half btf.Type, halfBits btf.Bits) *btf.Union {
		return &btf.Union{Size: size, Members: []btf.Member{
			{Name: whole, Type: wholeType},
			{Type: &btf.Struct{Size: size, Members: []btf.Member{
				{Name: a, Type: half},
				{Name: b, Type: half, Offset: halfBits},
			}}},
		}}
	}
	common := &btf.Struct{Name: "sock_common", Size: 136, Members: []btf.Member{
		{Type: pair(8, "skc_addrpair", u64, "skc_daddr", "skc_rcv_saddr", be32, 32)},
		{Name: "skc_hash", Type: u32, Offset: 64},
		{Type: pair(4, "skc_portpair", u32, "skc_dport", "skc_num", be16, 16), Offset: 96},
		{Name: "skc_family", Type: u16, Offset: 128},
		{Name: "skc_state", Type: &btf.Volatile{Type: u8}, Offset: 144},
		{Name: "skc_reuse", Type: u8, Offset: 152, BitfieldSize: 4},
		{Name: "skc_v6_daddr", Type: in6, Offset: 56 * 8},
		{Name: "skc_v6_rcv_saddr", Type: in6, Offset: 72 * 8},
	}}
	socket := &btf.Struct{Name: "socket", Size: 128, Members: []btf.Member{{Name: "state", Type: u32}}}
	inode := &btf.Struct{Name: "inode", Size: 600, Members: []btf.Member{
		{Name: "i_mode", Type: u16},
		{Name: "i_ino", Type: u64, Offset: 64 * 8},
	}}
	return map[string]*btf.Struct{
		"sock_common": common,
		"sock": {Name: "sock", Size: 760, Members: []btf.Member{
			{Name: "__sk_common", Type: common},
			{Name: "sk_socket", Type: &btf.Pointer{Target: socket}, Offset: 272 * 8},
		}},
		"socket_alloc": {Name: "socket_alloc", Size: 728, Members: []btf.Member{
			{Name: "socket", Type: socket},
			{Name: "vfs_inode", Type: inode, Offset: 128 * 8},
		}},
		"inode": inode,
		"inet_timewait_sock": {Name: "inet_timewait_sock", Size: 160, Members: []btf.Member{
			{Name: "__tw_common", Type: common},
			{Name: "tw_mark", Type: u32, Offset: 136 * 8},
			{Name: "tw_substate", Type: &btf.Volatile{Type: u8}, Offset: 140 * 8},
		}},
	}
}

// kernelLayout is what layoutFrom makes of kernelStructs.
var kernelLayout = layout{
	family: 16, state: 18, num: 14, dport: 12, daddr: 0, rcvSaddr: 4,
	v6Daddr: 56, v6RcvSaddr: 72, skSocket: 272, ino: 128 + 64, twSubstate: 140,
}

func specOf(t *testing.T, structs map[string]*btf.Struct) *btf.Spec {
	t.Helper()
	var types []btf.Type
	for _, s := range structs {
		types = append(types, s)
	}
	b, err := btf.NewBuilder(types, nil)
	require.NoError(t, err)
	spec, err := b.Spec()
	require.NoError(t, err)
	return spec
}

// findMember returns a pointer to a member of ms by name, looking into
// anonymous members.
func findMember(ms []btf.Member, name string) *btf.Member {
	for i := range ms {
		if ms[i].Name == name {
			return &ms[i]
		}
		var inner []btf.Member
		switch t := ms[i].Type.(type) {
		case *btf.Struct:
			inner = t.Members
		case *btf.Union:
			inner = t.Members
		}
		if ms[i].Name == "" {
			if m := findMember(inner, name); m != nil {
				return m
			}
		}
	}
	return nil
}

// TestLayoutFrom reads offsets from built BTF shaped like a kernel's, and
// checks that a missing struct or member, or one of the wrong size, is an
// error that names it.
func TestLayoutFrom(t *testing.T) {
	rename := func(name string) func(map[string]*btf.Struct) {
		return func(s map[string]*btf.Struct) { s[name].Name = name + "_gone" }
	}
	edit := func(st, name string, f func(*btf.Member)) func(map[string]*btf.Struct) {
		return func(s map[string]*btf.Struct) { f(findMember(s[st].Members, name)) }
	}
	tests := []struct {
		name    string
		change  func(map[string]*btf.Struct)
		want    layout
		wantErr []string
	}{
		{name: "kernel-like", change: func(map[string]*btf.Struct) {}, want: kernelLayout},
		{
			name: "no IPv6", change: edit("sock_common", "skc_v6_daddr", func(m *btf.Member) { m.Name = "unused" }),
			want: func() layout { l := kernelLayout; l.v6Daddr, l.v6RcvSaddr = -1, -1; return l }(),
		},
		{
			name: "socket not first in socket_alloc",
			change: func(s map[string]*btf.Struct) {
				findMember(s["socket_alloc"].Members, "socket").Offset = 16 * 8
				findMember(s["socket_alloc"].Members, "vfs_inode").Offset = 160 * 8
			},
			want: func() layout { l := kernelLayout; l.ino = 160 - 16 + 64; return l }(),
		},
		{name: "no sock_common", change: rename("sock_common"), wantErr: []string{"kernel BTF: struct sock_common: "}},
		{name: "no sock", change: rename("sock"), wantErr: []string{"kernel BTF: struct sock: "}},
		{name: "no inet_timewait_sock", change: rename("inet_timewait_sock"), wantErr: []string{"struct inet_timewait_sock: "}},
		{
			name:    "two structs missing",
			change:  func(s map[string]*btf.Struct) { rename("socket_alloc")(s); rename("inode")(s) },
			wantErr: []string{"struct socket_alloc: ", "struct inode: "},
		},
		{
			name:    "no member skc_dport",
			change:  edit("sock_common", "skc_dport", func(m *btf.Member) { m.Name = "skc_dport_gone" }),
			wantErr: []string{"kernel BTF: struct sock_common has no member skc_dport"},
		},
		{
			name:    "no member tw_substate",
			change:  edit("inet_timewait_sock", "tw_substate", func(m *btf.Member) { m.Name = "x" }),
			wantErr: []string{"kernel BTF: struct inet_timewait_sock has no member tw_substate"},
		},
		{
			name:    "skc_family of 4 bytes",
			change:  edit("sock_common", "skc_family", func(m *btf.Member) { m.Type = &btf.Int{Name: "int", Size: 4} }),
			wantErr: []string{"kernel BTF: sock_common.skc_family is 4 bytes, want 2"},
		},
		{
			name:    "i_ino as a bitfield",
			change:  edit("inode", "i_ino", func(m *btf.Member) { m.BitfieldSize = 32 }),
			wantErr: []string{"kernel BTF: struct inode has no member i_ino"},
		},
		{
			name:    "skc_state not at a byte",
			change:  edit("sock_common", "skc_state", func(m *btf.Member) { m.Offset = 145 }),
			wantErr: []string{"kernel BTF: struct sock_common has no member skc_state"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			structs := kernelStructs()
			tt.change(structs)
			got, err := layoutFrom(specOf(t, structs))
			if tt.wantErr != nil {
				require.Error(t, err)
				for _, w := range tt.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				if strings.HasSuffix(tt.wantErr[0], ": ") {
					assert.ErrorIs(t, err, btf.ErrNotFound, "the lookup error is wrapped")
				}
				assert.Equal(t, layout{}, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestLayoutKernel reads the running kernel's BTF: the offsets must be
// those of sock_common's fixed pairs (daddr then rcv_saddr, dport then
// num, family then state) and lie inside the structs they belong to.
func TestLayoutKernel(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	l, err := layoutFrom(spec)
	require.NoError(t, err)
	var common *btf.Struct
	require.NoError(t, spec.TypeByName("sock_common", &common))
	size := int16(common.Size)

	assert.Equal(t, l.daddr+4, l.rcvSaddr, "skc_addrpair")
	assert.Equal(t, l.dport+2, l.num, "skc_portpair")
	assert.Equal(t, l.family+2, l.state, "skc_family, skc_state")
	for _, off := range []int16{l.daddr, l.rcvSaddr, l.dport, l.num, l.family, l.state} {
		assert.True(t, off >= 0 && off+4 <= size, "offset %d inside sock_common (%d bytes)", off, size)
	}
	if _, err := os.Stat("/proc/net/tcp6"); err == nil {
		assert.Equal(t, l.v6Daddr+16, l.v6RcvSaddr, "skc_v6_daddr, skc_v6_rcv_saddr")
		assert.True(t, l.v6Daddr > l.state && l.v6RcvSaddr+16 <= size, "v6 addresses inside sock_common")
	}
	assert.GreaterOrEqual(t, l.skSocket, int32(size), "sk_socket after sock_common")
	assert.GreaterOrEqual(t, l.twSubstate, int32(size), "tw_substate after sock_common")
	assert.Positive(t, l.ino)
}

// TestKernelProgramWithoutIPv6 loads and runs the program a kernel
// without IPv6 gets (no v6 address loads, no jump to them): the verifier
// takes it and IPv4 sockets come out right.
func TestKernelProgramWithoutIPv6(t *testing.T) {
	openKernel(t) // skips where the program cannot be loaded
	spec, err := btf.LoadKernelSpec()
	require.NoError(t, err)
	l, err := layoutFrom(spec)
	require.NoError(t, err)
	l.v6Daddr, l.v6RcvSaddr = -1, -1
	iter, err := attach(spec, l, cacheSlots)
	require.NoError(t, err)
	src := &Source{iter: iter, buf: make([]byte, readSize)}
	defer src.Close()

	lb := sockettest.New(t)
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 2)
	got, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	ours := lb.Ours(got)
	require.Len(t, ours, 5)
	for _, s := range ours {
		assert.Equal(t, "127.0.0.1", s.LocalIP.String())
		assert.NotZero(t, s.Inode)
	}
	assert.Equal(t, 1, countState(ours, model.StateListen))
}

// TestKernelVerifierRefusal loads the program for a layout whose socket
// state lies past the end of sock_common: the verifier refuses it, and the
// error says so without blaming missing privileges.
func TestKernelVerifierRefusal(t *testing.T) {
	openKernel(t) // skips where nothing can be loaded
	spec, err := btf.LoadKernelSpec()
	require.NoError(t, err)
	l, err := layoutFrom(spec)
	require.NoError(t, err)
	l.state = 30000
	iter, err := attach(spec, l, cacheSlots)
	if err == nil {
		iter.Close()
	}
	require.Error(t, err)
	var verr *ebpf.VerifierError
	require.ErrorAs(t, err, &verr)
	uerr := unavailable(err)
	assert.True(t, model.IsUnavailable(uerr))
	assert.ErrorAs(t, uerr, &verr)
	assert.NotContains(t, uerr.Error(), "CAP_BPF")
	assert.Contains(t, unavailable(fmt.Errorf("load: %w", os.ErrPermission)).Error(), "needs CAP_BPF and CAP_PERFMON, or root")
}
