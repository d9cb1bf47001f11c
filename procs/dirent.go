package procs

import (
	"encoding/binary"
	"errors"
)

// direntHeader is the fixed part of struct linux_dirent64: d_ino (8),
// d_off (8), d_reclen (2), d_type (1), then the NUL-terminated name.
const direntHeader = 19

var errShortDirent = errors.New("truncated linux_dirent64 record")

// parseDirents calls fn for each record in buf, a getdents64 result. It checks
// every length before reading, so a malformed buffer yields an error, never a
// panic or an out-of-range read.
func parseDirents(buf []byte, fn func(ino uint64, name []byte)) error {
	for len(buf) > 0 {
		if len(buf) < direntHeader {
			return errShortDirent
		}
		ino := binary.NativeEndian.Uint64(buf[0:8])
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
		fn(ino, name)
		buf = buf[reclen:]
	}
	return nil
}

// parsePID returns the number a /proc entry name spells, or false for names
// that are not a positive decimal pid ("self", "net", overflowing digits).
func parsePID(name []byte) (int32, bool) {
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

// parseSocketLink returns the inode of a /proc/PID/fd link target of the form
// "socket:[12345]", or false for any other target (files, pipes, anon inodes).
func parseSocketLink(target []byte) (uint64, bool) {
	const prefix = "socket:["
	if len(target) < len(prefix)+2 || string(target[:len(prefix)]) != prefix || target[len(target)-1] != ']' {
		return 0, false
	}
	digits := target[len(prefix) : len(target)-1]
	if len(digits) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
