// Package sandbox takes a kernel feature away from the calling process for
// real, with a seccomp filter, so tests can exercise what the agent does
// when a feature is missing (a container runtime's seccomp policy does the
// same to it in production).
package sandbox

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupported says the architecture has no filter here.
var ErrUnsupported = errors.New("seccomp filter not written for this architecture")

// struct seccomp_data offsets and return values (linux/seccomp.h).
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // low 32 bits of args[0] on little-endian machines

	retAllow = 0x7fff0000 // SECCOMP_RET_ALLOW
	retErrno = 0x00050000 // SECCOMP_RET_ERRNO | errno

	ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeqK  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	retK  = unix.BPF_RET | unix.BPF_K

	setModeFilter = 1 // SECCOMP_SET_MODE_FILTER
	flagTsync     = 1 // SECCOMP_FILTER_FLAG_TSYNC: every thread of the process
)

// DenySocketFamily makes socket(family, ...) fail with errno in every
// thread of the calling process, for the rest of its life. Use it in a
// child process only.
func DenySocketFamily(family int, errno unix.Errno) error {
	return install(func(arch uint32) []unix.SockFilter {
		return []unix.SockFilter{
			{Code: ldAbs, K: offArch},
			{Code: jeqK, Jt: 0, Jf: 5, K: arch},
			{Code: ldAbs, K: offNr},
			{Code: jeqK, Jt: 0, Jf: 3, K: unix.SYS_SOCKET},
			{Code: ldAbs, K: offArg0},
			{Code: jeqK, Jt: 0, Jf: 1, K: uint32(family)},
			{Code: retK, K: retErrno | uint32(errno)},
			{Code: retK, K: retAllow},
		}
	})
}

// DenySyscall makes the system call nr fail with errno in every thread of
// the calling process, for the rest of its life (Docker's default profile
// does it to bpf(2)). Use it in a child process only.
func DenySyscall(nr uintptr, errno unix.Errno) error {
	return install(func(arch uint32) []unix.SockFilter {
		return []unix.SockFilter{
			{Code: ldAbs, K: offArch},
			{Code: jeqK, Jt: 0, Jf: 3, K: arch},
			{Code: ldAbs, K: offNr},
			{Code: jeqK, Jt: 0, Jf: 1, K: uint32(nr)},
			{Code: retK, K: retErrno | uint32(errno)},
			{Code: retK, K: retAllow},
		}
	})
}

// install loads the filter built for this machine's audit architecture.
func install(build func(arch uint32) []unix.SockFilter) error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return ErrUnsupported
	}
	prog := build(arch)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, setModeFilter, flagTsync, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		return fmt.Errorf("seccomp(SET_MODE_FILTER): %w", e)
	}
	runtime.KeepAlive(prog)
	return nil
}
