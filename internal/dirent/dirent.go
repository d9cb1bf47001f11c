// Package dirent reads the records getdents64(2) writes and the pid
// names of /proc's entries, for the callers that list /proc without an
// allocation per entry (the process join, the namespace finder).
package dirent

import (
	"encoding/binary"
	"errors"
)

// Header is the fixed part of struct linux_dirent64: d_ino (8), d_off
// (8), d_reclen (2), d_type (1), then the NUL-terminated name.
const Header = 19

// ErrShort is a buffer whose records do not fit it.
var ErrShort = errors.New("truncated linux_dirent64 record")

// Parse calls fn for each record in buf, a getdents64 result. It checks
// every length before reading, so a malformed buffer yields an error,
// never a panic or an out-of-range read.
func Parse(buf []byte, fn func(ino uint64, name []byte)) error {
	for len(buf) > 0 {
		if len(buf) < Header {
			return ErrShort
		}
		ino := binary.NativeEndian.Uint64(buf[0:8])
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < Header || reclen > len(buf) {
			return ErrShort
		}
		name := buf[Header:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		fn(ino, name)
		buf = buf[reclen:]
	}
	return nil
}

// PID returns the number a /proc entry name spells, or false for names
// that are not a positive decimal pid ("self", "net", overflowing digits).
func PID(name []byte) (int32, bool) {
	if len(name) == 0 || len(name) > 10 {
		return 0, false
	}
	var n int64
	for _, c := range name {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n <= 0 || n > 1<<31-1 {
		return 0, false
	}
	return int32(n), true
}
