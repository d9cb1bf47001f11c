package syscallfilter

import (
	"runtime"

	"github.com/elastic/beats/v7/libbeat/common/seccomp"
)

// AllowSetns lets setns(2) through libbeat's default seccomp policy for
// this architecture: reading every network namespace's sockets (netlink,
// the bpf iterator) means entering each one. The kernel still asks for
// CAP_SYS_ADMIN. Deny-list architectures allow it already.
func AllowSetns() error { return allowSetns(runtime.GOARCH) }

func allowSetns(goarch string) error {
	if denyLists[goarch] {
		return nil
	}
	return seccomp.ModifyDefaultPolicy(seccomp.AddSyscall, "setns")
}
