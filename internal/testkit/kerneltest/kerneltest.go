// Package kerneltest tells, for the socket sources' tests, a host that
// lacks a privilege or a kernel feature (the test skips) from a source
// that is broken (the test fails): only the first may skip, so that a bug
// in a request or a program the agent built can never pass as a skip.
package kerneltest

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BPFMissing reports whether err, from opening the bpf source, says this
// host cannot run it: a missing privilege (EPERM or EACCES from bpf(2);
// not the verifier's refusal of the program, which is EACCES too) or a
// missing kernel feature (no kernel BTF, no tcp iterator, a program type
// or helper the kernel lacks: ebpf.ErrNotSupported).
func BPFMissing(err error) bool {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return false
	}
	return errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported)
}

// RequireBPF checks err from opening the bpf source: nil passes, a host
// that cannot run the source skips the test, anything else fails it.
func RequireBPF(t testing.TB, err error) {
	t.Helper()
	require(t, err, BPFMissing, "the bpf source")
}

// require passes a nil err, skips the test when missing(err) and fails it
// otherwise (%+v: with the verifier's log for a refused program).
func require(t testing.TB, err error, missing func(error) bool, source string) {
	t.Helper()
	switch {
	case err == nil:
	case missing(err):
		t.Skipf("%s cannot run here: %v", source, err)
	default:
		t.Fatalf("opening %s: %+v", source, err)
	}
}

// NetlinkMissing reports whether err, from opening the netlink source,
// says this host has no sock_diag socket for it: socket(AF_NETLINK,
// NETLINK_SOCK_DIAG) refused by a seccomp policy or an LSM (EPERM,
// EACCES), or a kernel without netlink or sock_diag (EAFNOSUPPORT,
// EPROTONOSUPPORT). An error the kernel answers a dump request with is
// never one of these: it says the request was wrong (or, ENOENT, that no
// diag handler serves it), and a test must fail on it.
func NetlinkMissing(err error) bool {
	for _, errno := range []unix.Errno{unix.EPERM, unix.EACCES, unix.EAFNOSUPPORT, unix.EPROTONOSUPPORT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// RequireNetlink checks err from opening the netlink source as
// RequireBPF does for the bpf source.
func RequireNetlink(t testing.TB, err error) {
	t.Helper()
	require(t, err, NetlinkMissing, "the netlink source")
}
