package netns

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

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
