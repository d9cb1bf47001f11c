package capture

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ringWait waits for the ring buffer's wakeups in Go's netpoller, through
// a non-blocking duplicate of the map's fd. The ring buffer reader's own
// wait is an epoll_wait in a blocking system call: a goroutine parked in
// one keeps an OS thread in the kernel, and the runtime's monitor thread
// then wakes many times a second to check on it, which on an idle host
// cost more than everything else the agent does.
type ringWait struct {
	f   *os.File
	raw syscall.RawConn
}

func newRingWait(mapFD int) (*ringWait, error) {
	fd, err := unix.FcntlInt(uintptr(mapFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicating the ring buffer's fd: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("making the ring buffer's fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "connbeat ring buffer")
	// A file the netpoller could not take has no deadlines.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("waiting for the ring buffer in the netpoller: %w", err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("waiting for the ring buffer in the netpoller: %w", err)
	}
	return &ringWait{f: f, raw: raw}, nil
}

// wait returns when the programs woke the ring buffer's readers, at the
// read deadline (os.ErrDeadlineExceeded), or when the file is closed.
func (w *ringWait) wait() error {
	first := true
	return w.raw.Read(func(uintptr) bool {
		// The first call asks to wait for readiness, the second (after
		// it) is done: the records are read through the ringbuf.Reader.
		if first {
			first = false
			return false
		}
		return true
	})
}

// wake makes a wait that runs, or the next one, return at once.
func (w *ringWait) wake() { _ = w.f.SetReadDeadline(time.Unix(1, 0)) }

// setDeadline sets when the next wait returns at the latest.
func (w *ringWait) setDeadline(t time.Time) error { return w.f.SetReadDeadline(t) }

func (w *ringWait) close() error { return w.f.Close() }
