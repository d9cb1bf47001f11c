package bpfiter

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// TestEmbeddedProgram reads the program bpf2go embedded for this machine's
// byte order: a tcp iterator program, the inode cache map with its
// default size, and the mask beside it.
func TestEmbeddedProgram(t *testing.T) {
	spec, err := loadIter()
	require.NoError(t, err)

	prog := spec.Programs[iterProgConnbeatTcp]
	require.NotNil(t, prog)
	assert.Equal(t, ebpf.Tracing, prog.Type)
	assert.Equal(t, ebpf.AttachTraceIter, prog.AttachType)
	assert.Equal(t, "tcp", prog.AttachTo)
	assert.Equal(t, "Dual MIT/GPL", prog.License, "GPL-compatible: the program calls GPL-only helpers")

	cache := spec.Maps[iterMapConnbeatInodes]
	require.NotNil(t, cache)
	assert.Equal(t, ebpf.Array, cache.Type)
	assert.Equal(t, uint32(4), cache.KeySize)
	assert.Equal(t, uint32(16), cache.ValueSize)
	assert.Equal(t, uint32(cacheSlots), cache.MaxEntries)

	mask := spec.Variables[iterVarSlotMask]
	require.NotNil(t, mask)
	assert.True(t, mask.Constant(), "read-only, so that the verifier knows it")
	var got uint32
	require.NoError(t, mask.Get(&got))
	assert.Equal(t, uint32(cacheSlots-1), got)
}

// specOf builds BTF holding types (and what they refer to).
func specOf(t *testing.T, types ...btf.Type) *btf.Spec {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	require.NoError(t, err)
	spec, err := b.Spec()
	require.NoError(t, err)
	return spec
}

// TestCheckWordSize accepts a struct sock whose sk_socket is 8 bytes and
// refuses a 32-bit kernel's, or BTF without the member or the struct.
func TestCheckWordSize(t *testing.T) {
	socket := &btf.Struct{Name: "socket", Size: 128}
	sock := func(name, member string, ptrSize uint32) *btf.Struct {
		var ptr btf.Type = &btf.Pointer{Target: socket}
		if ptrSize != 8 {
			// BTF pointers have the builder's size: a 32-bit
			// kernel's pointer is told here by an int of its size.
			ptr = &btf.Int{Name: "ptr32", Size: ptrSize}
		}
		return &btf.Struct{Name: name, Size: 760, Members: []btf.Member{
			{Name: "sk_flags", Type: &btf.Int{Name: "long unsigned int", Size: 8}},
			{Name: member, Type: ptr, Offset: 272 * 8},
		}}
	}
	tests := []struct {
		name    string
		sock    *btf.Struct
		wantErr string
	}{
		{name: "64-bit", sock: sock("sock", "sk_socket", 8)},
		{name: "32-bit", sock: sock("sock", "sk_socket", 4), wantErr: "kernel BTF: sock.sk_socket is 4 bytes: the bpf source needs a 64-bit kernel"},
		{name: "no sk_socket", sock: sock("sock", "sk_sock", 8), wantErr: "kernel BTF: struct sock has no member sk_socket"},
		{name: "no struct sock", sock: sock("sock_gone", "sk_socket", 8), wantErr: "kernel BTF: struct sock: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkWordSize(specOf(t, tt.sock))
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

// TestCheckWordSizeKernel: the running kernel's struct sock passes, where
// it has BTF.
func TestCheckWordSizeKernel(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	kerneltest.RequireBPF(t, err) // skips only for a kernel without BTF
	require.NoError(t, checkWordSize(spec))
}

// kernelSpec returns the running kernel's BTF changed by edit, for loading
// the program as if on another kernel: its CO-RE relocations are resolved
// against these types, its verification is the real kernel's.
func kernelSpec(t *testing.T, edit func(t *testing.T, spec *btf.Spec)) *btf.Spec {
	t.Helper()
	spec, err := btf.LoadKernelSpec()
	require.NoError(t, err)
	edit(t, spec)
	return spec
}

// editMember renames or moves a member of a kernel struct.
func editMember(structName, member string, f func(*btf.Member)) func(*testing.T, *btf.Spec) {
	return func(t *testing.T, spec *btf.Spec) {
		t.Helper()
		var s *btf.Struct
		require.NoError(t, spec.TypeByName(structName, &s))
		m := findMember(s.Members, member)
		require.NotNil(t, m, "%s.%s", structName, member)
		f(m)
	}
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

// TestKernelProgramWithoutIPv6 loads the program against BTF in which
// sock_common has no IPv6 addresses, as in a kernel built without IPv6:
// the verifier takes it (the IPv6 loads CO-RE could not place are never
// reached) and IPv4 sockets come out right.
func TestKernelProgramWithoutIPv6(t *testing.T) {
	openKernel(t) // skips where the program cannot be loaded
	spec := kernelSpec(t, func(t *testing.T, spec *btf.Spec) {
		for _, name := range []string{"skc_v6_daddr", "skc_v6_rcv_saddr"} {
			editMember("sock_common", name, func(m *btf.Member) { m.Name += "_gone" })(t, spec)
		}
	})
	it, err := attach(spec, cacheSlots, model.TransportsOf(model.TCP))
	require.NoError(t, err)
	src := &Source{iters: it, buf: make([]byte, readSize)}
	defer src.Close()

	lb := sockettest.New(t)
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 2)
	v6 := port(lb.Listen("tcp6", "[::1]:0").Addr())
	got, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	ours := lb.Ours(got)
	require.Len(t, ours, 5, "the IPv4 listener and connections")
	for _, s := range ours {
		assert.Equal(t, "127.0.0.1", s.LocalIP.String())
		assert.NotZero(t, s.Inode)
	}
	assert.Equal(t, 1, countState(ours, model.StateListen))
	// The kernel does have IPv6: its sockets come out with the IPv4
	// fields in place of addresses, which shows that this program does
	// not read the IPv6 ones.
	var listener []model.Socket
	for _, s := range got {
		if s.LocalPort == v6 && s.State == model.StateListen {
			listener = append(listener, s)
		}
	}
	require.Len(t, listener, 1, "the ::1 listener")
	assert.NotEqual(t, netip.IPv6Loopback(), listener[0].LocalIP)
}

// TestKernelVerifierRefusal loads the program against BTF whose socket
// state lies past the end of sock_common: the verifier refuses it, and
// the error says so without blaming missing privileges.
func TestKernelVerifierRefusal(t *testing.T) {
	openKernel(t) // skips where nothing can be loaded
	spec := kernelSpec(t, editMember("sock_common", "skc_state", func(m *btf.Member) { m.Offset = 30000 * 8 }))
	it, err := attach(spec, cacheSlots, model.TransportsOf(model.TCP))
	if err == nil {
		it.close()
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

// TestKernelMissingField loads the program against BTF without a member
// it reads: the load fails with a bad CO-RE relocation, and the verifier's
// log, which the error carries, shows the C source up to the access CO-RE
// could not place.
func TestKernelMissingField(t *testing.T) {
	openKernel(t) // skips where nothing can be loaded
	spec := kernelSpec(t, editMember("inet_timewait_sock", "tw_substate", func(m *btf.Member) { m.Name = "tw_gone" }))
	it, err := attach(spec, cacheSlots, model.TransportsOf(model.TCP))
	if err == nil {
		it.close()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad CO-RE relocation")
	var verr *ebpf.VerifierError
	require.ErrorAs(t, err, &verr)
	assert.Contains(t, fmt.Sprintf("%+v", verr), "instruction poisoned by CO-RE")
	assert.NotContains(t, unavailable(err).Error(), "CAP_BPF")
}
