//go:build !(linux && (amd64 || arm64))

package procs

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// statFD stats PID/fd under the proc root.
func (r *Resolver) statFD(pid int32, st *unix.Stat_t) error {
	return unix.Fstatat(r.rootFD, strconv.Itoa(int(pid))+"/fd", st, 0)
}
