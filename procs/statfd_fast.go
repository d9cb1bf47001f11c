//go:build linux && (amd64 || arm64)

package procs

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// statFD stats PID/fd under the proc root. It calls fstatat with a reused
// path buffer: the unix wrapper would allocate a C string for every process
// on every poll.
func (r *Resolver) statFD(pid int32, st *unix.Stat_t) error {
	r.pathBuf = append(strconv.AppendInt(r.pathBuf[:0], int64(pid), 10), "/fd\x00"...)
	_, _, errno := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(r.rootFD),
		uintptr(unsafe.Pointer(&r.pathBuf[0])), uintptr(unsafe.Pointer(st)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
