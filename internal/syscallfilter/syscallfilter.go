// Package syscallfilter adapts libbeat's default seccomp policy to what
// connbeat needs: bpf(2), for the bpf socket source, and setns(2), to read
// the sockets of other network namespaces.
package syscallfilter

import (
	"runtime"

	"github.com/elastic/beats/v7/libbeat/common/seccomp"
)

// denyLists are the architectures whose libbeat default policy allows
// every system call but a few: bpf(2) is allowed there already, and
// seccomp.AddSyscall, which adds to the policy's first group, would put
// it among the denied ones. Elsewhere (amd64, 386) the policy is an
// allowlist without bpf.
var denyLists = map[string]bool{"arm64": true, "arm": true}

// AllowBPF lets bpf(2) through libbeat's default seccomp policy for this
// architecture; the kernel still asks for CAP_BPF and CAP_PERFMON.
func AllowBPF() error { return allowBPF(runtime.GOARCH) }

func allowBPF(goarch string) error {
	if denyLists[goarch] {
		return nil
	}
	return seccomp.ModifyDefaultPolicy(seccomp.AddSyscall, "bpf")
}

// AllowSetns lets setns(2) through libbeat's default seccomp policy for
// this architecture: the socket sources enter each network namespace to
// read it (the kernel still asks for CAP_SYS_ADMIN). The allowlists
// (amd64, 386) lack it; the deny lists do not deny it.
func AllowSetns() error { return allowSetns(runtime.GOARCH) }

func allowSetns(goarch string) error {
	if denyLists[goarch] {
		return nil
	}
	return seccomp.ModifyDefaultPolicy(seccomp.AddSyscall, "setns")
}
