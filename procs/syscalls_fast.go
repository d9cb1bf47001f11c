//go:build linux && (amd64 || arm64)

package procs

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The functions here call the kernel with reused, NUL-terminated path
// buffers: the unix wrappers allocate a C string per call, and a poll makes
// one call per process and the first poll one per fd on the host.

// statFD stats PID/fd under the proc root.
func (r *Resolver) statFD(pid int32, st *unix.Stat_t) error {
	r.pathBuf = append(strconv.AppendInt(r.pathBuf[:0], int64(pid), 10), "/fd\x00"...)
	_, _, errno := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(r.rootFD),
		uintptr(unsafe.Pointer(&r.pathBuf[0])), uintptr(unsafe.Pointer(st)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// openFDDir opens PID/fd under the proc root.
func (fr *fdReader) openFDDir(rootFD int, pid int32) (int, error) {
	fr.pathBuf = append(strconv.AppendInt(fr.pathBuf[:0], int64(pid), 10), "/fd\x00"...)
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(rootFD), uintptr(unsafe.Pointer(&fr.pathBuf[0])),
		uintptr(unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC), 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// readlink reads the target of the fd link name in the fd directory dirFD
// into fr.linkBuf.
func (fr *fdReader) readlink(dirFD int, name []byte) (int, error) {
	fr.nameBuf = append(append(fr.nameBuf[:0], name...), 0)
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirFD), uintptr(unsafe.Pointer(&fr.nameBuf[0])),
		uintptr(unsafe.Pointer(&fr.linkBuf[0])), uintptr(len(fr.linkBuf)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
