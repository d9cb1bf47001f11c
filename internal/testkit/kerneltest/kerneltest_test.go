package kerneltest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// wrap wraps err as the sources' Open does.
func wrap(err error) error {
	return fmt.Errorf("opening: %w", &model.UnavailableError{Source: "x", Err: fmt.Errorf("load: %w", err)})
}

// TestBPFMissing: a missing privilege or kernel feature counts as missing,
// however deeply wrapped; the verifier's refusal (an EACCES too) and any
// other failure do not.
func TestBPFMissing(t *testing.T) {
	for err, want := range map[error]bool{
		unix.EPERM:  true,
		unix.EACCES: true,
		fmt.Errorf("no BTF: %w", ebpf.ErrNotSupported):                                  true,
		&ebpf.VerifierError{Cause: unix.EACCES, Log: []string{"R1 invalid mem access"}}: false,
		&ebpf.VerifierError{Cause: unix.EPERM}:                                          false,
		unix.EINVAL:                                                                     false,
		errors.New("attaching the tcp iterator: refused"):                               false,
	} {
		assert.Equal(t, want, BPFMissing(wrap(err)), "%v", err)
	}
}

// TestNetlinkMissing: errors of socket(AF_NETLINK, NETLINK_SOCK_DIAG)
// count as missing; the kernel's answers to a dump request do not.
func TestNetlinkMissing(t *testing.T) {
	for err, want := range map[error]bool{
		unix.EPERM:           true,
		unix.EACCES:          true,
		unix.EAFNOSUPPORT:    true,
		unix.EPROTONOSUPPORT: true,
		unix.ENOENT:          false, // no diag handler for the family or protocol asked for
		unix.EINVAL:          false,
		errors.New("no sock_diag answer within 10s"): false,
	} {
		assert.Equal(t, want, NetlinkMissing(wrap(err)), "%v", err)
	}
}
