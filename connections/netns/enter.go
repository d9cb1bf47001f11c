package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"

	"golang.org/x/sys/unix"
)

// Outcome says how one namespace's read went.
type Outcome uint8

// Outcomes of a namespace's read.
const (
	// Read: read called, without error.
	Read Outcome = iota
	// Vanished: the namespace went away before it could be entered (its
	// process exited, its name was deleted).
	Vanished
	// Denied: the agent may not enter it (setns needs CAP_SYS_ADMIN,
	// opening another user's /proc/PID/ns/net CAP_SYS_PTRACE).
	Denied
	// Failed: entering it or its read failed otherwise.
	Failed
)

// Visit is what Each calls for one namespace: read says whether the
// namespace had to be entered for it (needs), and then reads it.
type Visit struct {
	// Enter says whether the read of ns must run inside it; when false,
	// read runs on the same thread without entering (reads through
	// /proc/PID/net need no setns).
	Enter func(ns Namespace) bool
	// Read reads one namespace.
	Read func(ns Namespace) error
	// Done receives each namespace's outcome and, for Denied and
	// Failed, the error.
	Done func(ns Namespace, o Outcome, err error)
}

// ErrStranded says the reading thread could not return to the agent's
// namespace; it was left locked so that the Go runtime ends it, and the
// reads made before are still good.
var ErrStranded = errors.New("could not return the reading thread to the agent's network namespace")

// Each runs v.Read for every namespace of list, in order, on one OS
// thread locked for the pass: inside the namespace when v.Enter says so
// (setns(CLONE_NEWNET), with the namespace's file open only for that
// read), and back to the agent's namespace before the thread is
// released. A namespace that cannot be entered is reported to v.Done and
// passed over. The error is ctx's, or ErrStranded.
func (f *Finder) Each(ctx context.Context, list []Namespace, v Visit) error {
	needs := false
	for _, ns := range list {
		if v.Enter(ns) {
			needs = true
			break
		}
	}
	if !needs {
		// Nothing to enter: no thread to lock.
		for _, ns := range list {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := v.Read(ns)
			v.Done(ns, outcome(err), err)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// A thread's namespace outlives the goroutine on it: the runtime
		// reuses the thread once unlocked, so it must be back in the
		// namespace it came with first, or never be unlocked. That is the
		// agent's own unless the Finder was made on a thread of another
		// namespace (tests do).
		back, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("opening the reading thread's network namespace: %w", err)
			return
		}
		var st unix.Stat_t
		if err := unix.Fstat(back, &st); err != nil {
			unix.Close(back)
			runtime.UnlockOSThread()
			done <- fmt.Errorf("stat of the reading thread's network namespace: %w", err)
			return
		}
		// Already in the agent's namespace (always, in the agent): the
		// agent's own is read without a setns, which needs CAP_SYS_ADMIN
		// even into the namespace a thread is in.
		home := st.Ino == f.own.Inode
		stranded := false
		for _, ns := range list {
			if err = ctx.Err(); err != nil {
				break
			}
			if !v.Enter(ns) || (ns.Own && home) {
				rerr := v.Read(ns)
				v.Done(ns, outcome(rerr), rerr)
				continue
			}
			o, rerr := f.enterAndRead(ns, back, v.Read)
			v.Done(ns, o, rerr)
			if errors.Is(rerr, ErrStranded) {
				stranded = true
				break
			}
		}
		// Closed before the result is sent: the caller may count fds.
		unix.Close(back)
		if stranded {
			done <- ErrStranded
			return // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}

// enterAndRead moves the calling (locked) thread into ns, reads it and
// moves the thread back to the namespace back. The agent's namespace is
// entered through the fd the Finder keeps.
func (f *Finder) enterAndRead(ns Namespace, back int, read func(Namespace) error) (Outcome, error) {
	fd := f.ownFD
	if !ns.Own {
		var err error
		fd, err = unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			err = fmt.Errorf("opening network namespace %d (%s): %w", ns.Inode, ns.Path, err)
			return outcome(err), err
		}
		defer unix.Close(fd)
		// The process that showed the namespace may have exited and its
		// pid been reused by a process elsewhere: check the inode.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return Failed, fmt.Errorf("stat of network namespace %d: %w", ns.Inode, err)
		}
		if st.Ino != ns.Inode {
			return Vanished, nil
		}
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		err = fmt.Errorf("entering network namespace %d (setns): %w", ns.Inode, err)
		return outcome(err), err
	}
	rerr := read(ns)
	if err := unix.Setns(back, unix.CLONE_NEWNET); err != nil {
		return Failed, fmt.Errorf("%w: %w", ErrStranded, err)
	}
	return outcome(rerr), rerr
}

// outcome classifies an error of opening, entering or reading a
// namespace.
func outcome(err error) Outcome {
	switch {
	case err == nil:
		return Read
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH):
		return Vanished
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EPERM):
		return Denied
	}
	return Failed
}
