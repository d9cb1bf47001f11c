package netns

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// direntHeader is the fixed part of a linux_dirent64: d_ino, d_off,
// d_reclen, d_type.
const direntHeader = 19

var errShortDirent = errors.New("truncated linux_dirent64 record")

// parseDirents calls fn with the name of each record in buf, a getdents64
// result, checking every length before it reads.
func parseDirents(buf []byte, fn func(name []byte)) error {
	for len(buf) > 0 {
		if len(buf) < direntHeader {
			return errShortDirent
		}
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < direntHeader || reclen > len(buf) {
			return errShortDirent
		}
		name := buf[direntHeader:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		fn(name)
		buf = buf[reclen:]
	}
	return nil
}

// parsePID returns the pid a /proc entry's name spells, or false for
// names that are not one ("self", "net", too many digits).
func parsePID(name []byte) (int, bool) {
	if len(name) == 0 || len(name) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range name {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n <= 0 || n > 1<<31-1 {
		return 0, false
	}
	return n, true
}

// readlinkat reads the link at path (NUL-terminated, relative to dirfd)
// into buf without allocating.
func readlinkat(dirfd int, path []byte, buf []byte) (int, error) {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd),
			uintptr(unsafe.Pointer(&path[0])), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return 0, errno
		}
		return int(n), nil
	}
}

// openat opens path (NUL-terminated) read-only without allocating.
func openat(path []byte) (int, error) {
	for {
		atFDCWD := unix.AT_FDCWD
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFDCWD),
			uintptr(unsafe.Pointer(&path[0])), uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return -1, errno
		}
		return int(fd), nil
	}
}
