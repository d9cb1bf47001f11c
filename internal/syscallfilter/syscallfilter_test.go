package syscallfilter

import (
	"encoding/binary"
	"runtime"
	"testing"
	_ "unsafe" // go:linkname

	// The package whose default policy the test reads.
	_ "github.com/elastic/beats/v7/libbeat/common/seccomp"
	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
)

// defaultPolicy is libbeat's policy for the architecture this test was
// built for (set by its init); libbeat exports no way to read it.
//
//go:linkname defaultPolicy github.com/elastic/beats/v7/libbeat/common/seccomp.defaultPolicy
var defaultPolicy *seccomp.Policy

// verdict runs the assembled policy, as the kernel would, on a call of
// syscall name from this architecture, and returns the action.
func verdict(t *testing.T, prog []bpf.Instruction, info *arch.Info, name string) seccomp.Action {
	t.Helper()
	nr, ok := info.SyscallNames[name]
	require.True(t, ok, "no syscall %s on %s", name, info.Name)
	vm, err := bpf.NewVM(prog)
	require.NoError(t, err)
	// struct seccomp_data: nr, arch, instruction_pointer, args[6]. The VM
	// loads words big-endian (network order); the kernel native-endian:
	// the fields are written the way the VM reads them.
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], uint32(nr))
	binary.BigEndian.PutUint32(data[4:], uint32(info.ID))
	ret, err := vm.Run(data)
	require.NoError(t, err)
	return seccomp.Action(uint32(ret) & 0xffff0000)
}

// TestAllowBPF: after AllowBPF, libbeat's default policy for the
// architecture this binary runs on lets bpf(2) through, and still denies
// what it denied. On arm64 the policy is a deny list: AddSyscall("bpf"),
// which connbeat called on every architecture, denied bpf there. CI runs
// this test for arm64 under qemu-user.
func TestAllowBPF(t *testing.T) {
	require.NotNil(t, defaultPolicy, "libbeat has a default policy for %s", runtime.GOARCH)
	info, err := arch.GetInfo("")
	require.NoError(t, err)
	before, err := defaultPolicy.Assemble()
	require.NoError(t, err)

	require.NoError(t, AllowBPF())
	after, err := defaultPolicy.Assemble()
	require.NoError(t, err)
	assert.Equal(t, seccomp.ActionAllow, verdict(t, after, info, "bpf"), "bpf(2) on %s", runtime.GOARCH)

	// Nothing else changed: every syscall the policy denied before is
	// still denied, every other one allowed as before.
	for name := range info.SyscallNames {
		if name == "bpf" {
			continue
		}
		assert.Equal(t, verdict(t, before, info, name), verdict(t, after, info, name), name)
	}
	denied := 0
	for name := range info.SyscallNames {
		if verdict(t, after, info, name) != seccomp.ActionAllow {
			denied++
		}
	}
	assert.NotZero(t, denied, "the policy still denies something")
	t.Logf("%s: %d of %d system calls denied", runtime.GOARCH, denied, len(info.SyscallNames))
}

// TestAllowSetns: after AllowSetns, libbeat's default policy lets setns(2)
// through, which the agent's reads of other network namespaces need, and
// nothing else changed.
func TestAllowSetns(t *testing.T) {
	require.NotNil(t, defaultPolicy, "libbeat has a default policy for %s", runtime.GOARCH)
	info, err := arch.GetInfo("")
	require.NoError(t, err)
	before, err := defaultPolicy.Assemble()
	require.NoError(t, err)
	require.NoError(t, AllowSetns())
	after, err := defaultPolicy.Assemble()
	require.NoError(t, err)
	assert.Equal(t, seccomp.ActionAllow, verdict(t, after, info, "setns"), "setns(2) on %s", runtime.GOARCH)
	for name := range info.SyscallNames {
		if name != "setns" {
			assert.Equal(t, verdict(t, before, info, name), verdict(t, after, info, name), name)
		}
	}
}
