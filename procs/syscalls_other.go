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

// openFDDir opens PID/fd under the proc root.
func (fr *fdReader) openFDDir(rootFD int, pid int32) (int, error) {
	return unix.Openat(rootFD, strconv.Itoa(int(pid))+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// readlink reads the target of the fd link name in the fd directory dirFD
// into fr.linkBuf.
func (fr *fdReader) readlink(dirFD int, name []byte) (int, error) {
	return unix.Readlinkat(dirFD, string(name), fr.linkBuf)
}
