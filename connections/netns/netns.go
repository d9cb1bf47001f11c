// Package netns finds the host's network namespaces and runs a read inside
// each of them, so that every socket source reads every namespace through
// the same loop: the namespaces of processes (/proc/PID/ns/net, one entry
// per namespace inode) and the named ones under /run/netns that no process
// holds.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/dirent"
)

// Namespace is one network namespace found by a List.
type Namespace struct {
	// Inode is the namespace's inode number in the nsfs, what `ip netns
	// identify`, `lsns` and /proc/PID/ns/net's link name show.
	Inode uint64
	// PID is a process found in the namespace, 0 for a named namespace no
	// process holds. The process may exit at any time.
	PID int
	// Path is where the namespace can be opened: /proc/PID/ns/net, or the
	// named namespace's file under /run/netns.
	Path string
	// Own marks the agent's own namespace: the one of the thread that
	// called New.
	Own bool
}

// Options configure a Finder.
type Options struct {
	// ProcPath is the proc filesystem of the host's processes.
	ProcPath string
	// NamedPath is where named namespaces are mounted ("/run/netns";
	// empty: none are looked for).
	NamedPath string
	// OwnOnly lists the agent's own namespace only.
	OwnOnly bool
}

// Missed is what a List could not see.
type Missed struct {
	// Processes counts processes whose namespace link could not be read
	// (another user's process without CAP_SYS_PTRACE): their namespaces
	// are found only if another process or a name shows them.
	Processes int
	// Malformed counts namespace links or files that did not name a
	// network namespace.
	Malformed int
}

// Finder lists network namespaces. It keeps its agent's own namespace
// open (one fd for its life), the one place a reading thread returns to;
// every other namespace is opened only while it is read. It is not safe
// for concurrent use.
type Finder struct {
	opts Options
	own  Namespace
	// ownFD is the agent's namespace, to enter it from any thread.
	ownFD int
	// nsDev is the nsfs device: a file under NamedPath on another device
	// is not a mounted namespace (a stale name after a failed `ip netns
	// del`).
	nsDev uint64
	seen  map[uint64]struct{}
	names []string
	// dirents and rel are reused buffers of List; paths holds the last
	// path given to each namespace's process, so that a namespace whose
	// first process stays the same costs no allocation.
	dirents []byte
	rel     []byte
	paths   map[uint64]pidPath
}

type pidPath struct {
	pid  int
	path string
}

// pathOf returns /proc/PID/ns/net, reusing the last one made for ino.
func (f *Finder) pathOf(ino uint64, pid int) string {
	if p, ok := f.paths[ino]; ok && p.pid == pid {
		return p.path
	}
	if len(f.paths) > 4*len(f.seen)+64 {
		clear(f.paths) // bounded: namespaces come and go
	}
	path := f.opts.ProcPath + "/" + strconv.Itoa(pid) + "/ns/net"
	f.paths[ino] = pidPath{pid, path}
	return path
}

// New returns a Finder whose own namespace is the calling thread's.
func New(opts Options) (*Finder, error) {
	if opts.ProcPath == "" {
		opts.ProcPath = "/proc"
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the agent's network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat of the agent's network namespace: %w", err)
	}
	return &Finder{
		opts:  opts,
		own:   Namespace{Inode: st.Ino, Path: "/proc/thread-self/ns/net", Own: true},
		ownFD: fd,
		nsDev: uint64(st.Dev),
		seen:  map[uint64]struct{}{},
		paths: map[uint64]pidPath{},
	}, nil
}

// Own returns the agent's own namespace.
func (f *Finder) Own() Namespace { return f.own }

// Close releases the agent's namespace fd.
func (f *Finder) Close() error {
	if f.ownFD < 0 {
		return nil
	}
	err := unix.Close(f.ownFD)
	f.ownFD = -1
	return err
}

// List appends the namespaces found now to dst, the agent's own first,
// each once. Processes that exit during the scan, and processes whose
// namespace is not readable, are passed over (the latter counted in
// Missed); only an unreadable proc directory is an error.
func (f *Finder) List(dst []Namespace) ([]Namespace, Missed, error) {
	var missed Missed
	dst = append(dst, f.own)
	if f.opts.OwnOnly {
		return dst, missed, nil
	}
	clear(f.seen)
	f.seen[f.own.Inode] = struct{}{}
	dirfd, err := unix.Open(f.opts.ProcPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return dst, missed, fmt.Errorf("listing processes: open %s: %w", f.opts.ProcPath, err)
	}
	defer unix.Close(dirfd)
	if f.dirents == nil {
		f.dirents = make([]byte, 32<<10)
	}
	var link [64]byte
	visit := func(_ uint64, name []byte) {
		p32, ok := dirent.PID(name)
		if !ok {
			return
		}
		pid := int(p32)
		f.rel = append(append(f.rel[:0], name...), "/ns/net\x00"...)
		n, lerr := readlinkat(dirfd, f.rel, link[:])
		switch {
		case lerr == nil:
		case errors.Is(lerr, unix.ENOENT) || errors.Is(lerr, unix.ESRCH):
			return // exited
		case errors.Is(lerr, unix.EACCES) || errors.Is(lerr, unix.EPERM):
			missed.Processes++
			return
		default:
			missed.Malformed++
			return
		}
		ino, ok := ParseLink(link[:n])
		if !ok {
			missed.Malformed++
			return
		}
		if _, dup := f.seen[ino]; dup {
			return
		}
		f.seen[ino] = struct{}{}
		dst = append(dst, Namespace{Inode: ino, PID: pid, Path: f.pathOf(ino, pid)})
	}
	for {
		n, err := unix.Getdents(dirfd, f.dirents)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return dst, missed, fmt.Errorf("listing processes: getdents %s: %w", f.opts.ProcPath, err)
		}
		if n <= 0 {
			break
		}
		if err := dirent.Parse(f.dirents[:n], visit); err != nil {
			return dst, missed, fmt.Errorf("listing processes: %w", err)
		}
	}
	return f.named(dst, &missed), missed, nil
}

// named appends the namespaces mounted under NamedPath that no process
// showed.
func (f *Finder) named(dst []Namespace, missed *Missed) []Namespace {
	if f.opts.NamedPath == "" {
		return dst
	}
	dir, err := os.Open(f.opts.NamedPath)
	if err != nil {
		// No named namespace was ever made (no /run/netns), or it is
		// unreadable: either way there is nothing more to find.
		return dst
	}
	f.names, _ = dir.Readdirnames(-1)
	dir.Close()
	for _, name := range f.names {
		path := filepath.Join(f.opts.NamedPath, name)
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			continue // deleted meanwhile
		}
		if uint64(st.Dev) != f.nsDev || st.Mode&unix.S_IFMT != unix.S_IFREG {
			missed.Malformed++
			continue
		}
		if _, dup := f.seen[st.Ino]; dup {
			continue
		}
		f.seen[st.Ino] = struct{}{}
		dst = append(dst, Namespace{Inode: st.Ino, Path: path})
	}
	return dst
}

// ParseLink parses the target of a /proc/PID/ns/net link, "net:[INODE]".
func ParseLink(b []byte) (uint64, bool) {
	s, ok := strings.CutPrefix(string(b), "net:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok || s == "" || s[0] == '+' {
		return 0, false
	}
	ino, err := strconv.ParseUint(s, 10, 64)
	if err != nil || ino == 0 {
		return 0, false
	}
	return ino, true
}
