// Package procs joins sockets to the processes that hold them, by scanning
// /proc/PID/fd incrementally: only processes that are new, whose fd count
// changed, or that may hold a socket nobody was found for are read again.
package procs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/dirent"
	"github.com/connbeat/connbeat/model"
	"github.com/prometheus/procfs"
)

// Options configure a Resolver.
type Options struct {
	// Root is the proc filesystem, usually /proc.
	Root     string
	Metadata MetadataOptions
	// FullRescanEvery is how many refreshes pass before processes whose fd
	// table was unreadable are tried again; it also forces a full fd scan
	// that often on
	// kernels whose /proc/PID/fd size is not the fd count (< 6.2), so that
	// sockets moved between processes are not attributed to a stale owner.
	FullRescanEvery int
}

// Stats describe one Refresh; they feed the debug log and benchmarks.
type Stats struct {
	Processes  int // processes listed in /proc
	Rescanned  int // fd tables read this refresh
	Denied     int // processes whose fd table the agent may not read
	Unresolved int // socket inodes with no owner found (TIME_WAIT excluded)
	// Unchanged says the refresh found the host as the previous one left
	// it: the same socket inodes in the same order, no fd table read, no
	// process gone. Every socket's owner is then what it was.
	Unchanged bool
}

// proc is what the resolver remembers of one pid.
type proc struct {
	dirIno  uint64 // inode of /proc/PID: a new process instance gets a new one
	fdSize  int64  // st_size of /proc/PID/fd, the fd count on kernels >= 6.2
	uid     uint32 // owner of /proc/PID/fd, the process's effective uid
	denied  bool
	sockets []uint64
	seen    uint64 // refresh generation that last listed the pid
	scanned uint64 // refresh generation that last read its fd table
	checked uint64 // refresh generation that last read its image's key
	key     procKey
	meta    *model.Process
	hasMeta bool
}

// Resolver maps socket inodes to owning processes. It is not safe for
// concurrent use: one poll loop owns it.
type Resolver struct {
	root    string
	rootFD  int
	meta    *metaReader
	fdCount bool // whether /proc/PID/fd's size is the fd count
	opts    Options

	gen   uint64
	procs map[int32]*proc
	owner map[uint64]int32 // inode -> first owner
	// shared holds the further owners of an inode (forked workers): a set,
	// so that adding, removing and attributing stay linear in the holders.
	shared  map[uint64]map[int32]struct{}
	unknown map[uint64]uint64 // inodes no scan found an owner for -> gen last seen
	byMeta  map[procKey]*model.Process
	// lookups are Lookup's details of processes the fd scan did not list.
	lookups map[procKey]*model.Process

	// lastInodes are the inodes of the previous refresh's sockets, in the
	// order the source listed them; changed says whether an fd table was
	// read or a process dropped since. Together they let a refresh of an
	// unchanged host skip the per-socket owner check.
	lastInodes []uint64
	changed    bool

	// steady says this refresh found the host as the previous one left it
	// (same inodes in the same order, no fd table read, no process gone):
	// Owner then answers from memo, the previous poll's answers in call
	// order, instead of two map lookups a socket. memoNext records this
	// poll's answers; memoAt is the next memo entry to match.
	steady   bool
	memo     []ownerAnswer
	memoNext []ownerAnswer
	memoAt   int

	dirBuf  []byte
	pathBuf []byte // "PID/fd\x00" for fstatat without allocating
	readers []*fdReader
	batch   []scanJob
}

// New opens the proc filesystem at opts.Root.
func New(opts Options) (*Resolver, error) {
	if opts.Root == "" {
		opts.Root = "/proc"
	}
	if opts.FullRescanEvery <= 0 {
		opts.FullRescanEvery = 30
	}
	fsys, err := procfs.NewFS(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("opening proc filesystem %s: %w", opts.Root, err)
	}
	meta, err := newMetaReader(fsys, opts.Root, opts.Metadata)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(opts.Root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", opts.Root, err)
	}
	r := &Resolver{
		root:    opts.Root,
		rootFD:  fd,
		meta:    meta,
		opts:    opts,
		procs:   map[int32]*proc{},
		owner:   map[uint64]int32{},
		shared:  map[uint64]map[int32]struct{}{},
		unknown: map[uint64]uint64{},
		byMeta:  map[procKey]*model.Process{},
		lookups: map[procKey]*model.Process{},
		dirBuf:  make([]byte, 32<<10),
		pathBuf: make([]byte, 0, 32),
	}
	r.fdCount = fdSizeIsCount(opts.Root)
	return r, nil
}

// fdSizeIsCount reports whether stat(/proc/PID/fd).st_size is the number of
// open fds (Linux >= 6.2). Our own process has stdin/out/err open, so a zero
// size means the kernel does not report it.
func fdSizeIsCount(root string) bool {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, strconv.Itoa(os.Getpid()), "fd"), &st); err != nil {
		return false
	}
	return st.Size > 0
}

// FDCountSignal reports whether the cheap fd-count change signal is in use.
func (r *Resolver) FDCountSignal() bool { return r.fdCount }

// Close releases the proc directory handle.
func (r *Resolver) Close() error { return unix.Close(r.rootFD) }

// Refresh brings the inode map up to date for the sockets of one poll.
// Processes that vanish mid-scan are skipped, not errors; the only error is
// failing to list the proc directory itself.
func (r *Resolver) Refresh(ctx context.Context, sockets []model.Socket) (Stats, error) {
	r.gen++
	r.steady = false
	r.memo, r.memoNext, r.memoAt = r.memoNext, r.memo[:0], 0
	var stats Stats
	full := !r.fdCount && r.gen%uint64(r.opts.FullRescanEvery) == 1

	r.batch = r.batch[:0]
	if _, err := unix.Seek(r.rootFD, 0, 0); err != nil {
		return stats, fmt.Errorf("rewinding %s: %w", r.root, err)
	}
	for {
		n, err := unix.Getdents(r.rootFD, r.dirBuf)
		if err != nil {
			return stats, fmt.Errorf("listing %s: %w", r.root, err)
		}
		if n <= 0 {
			break
		}
		if err := dirent.Parse(r.dirBuf[:n], func(ino uint64, name []byte) {
			pid, ok := dirent.PID(name)
			if !ok {
				return
			}
			stats.Processes++
			r.visit(pid, ino, full)
		}); err != nil {
			return stats, fmt.Errorf("listing %s: %w", r.root, err)
		}
		if err := ctx.Err(); err != nil {
			return stats, err
		}
	}
	for pid, p := range r.procs {
		if p.seen != r.gen {
			r.drop(pid, p)
		}
	}
	stats.Rescanned = r.scanBatch(ctx, r.batch)
	if err := ctx.Err(); err != nil {
		return stats, err
	}

	stats.Rescanned += r.resolveUnknown(ctx, sockets)
	stats.Unchanged = r.steady
	for _, p := range r.procs {
		if p.denied {
			stats.Denied++
		}
	}
	for ino, g := range r.unknown {
		if g != r.gen {
			delete(r.unknown, ino) // the socket is gone
		} else {
			stats.Unresolved++
		}
	}
	return stats, nil
}

// visit updates one pid found in /proc and queues its fd table to be read
// when it is new or changed.
func (r *Resolver) visit(pid int32, dirIno uint64, full bool) {
	p := r.procs[pid]
	if p != nil && p.dirIno != dirIno {
		// The pid may have been reused: start over. The metadata cache keyed
		// by (pid, start time) saves the re-read if it was not.
		r.drop(pid, p)
		p = nil
	}
	if p == nil {
		p = &proc{dirIno: dirIno}
		r.procs[pid] = p
	}
	// Never read yet (new, or its read was cancelled): read it now.
	fresh := p.scanned == 0
	p.seen = r.gen

	var st unix.Stat_t
	if err := r.statFD(pid, &st); err != nil {
		// ENOENT: exited since the listing. EACCES: another user's process.
		p.denied = errors.Is(err, unix.EACCES)
		return
	}
	// procfs makes a non-dumpable task's files root's (a process between
	// a credential change and its exec, or one that set PR_SET_DUMPABLE 0),
	// so a denial can be transient: the fd directory changing owner, or the
	// periodic retry, gives a denied process another chance.
	ownerChanged := st.Uid != p.uid
	p.uid = st.Uid
	if ownerChanged && p.hasMeta {
		// setuid and friends: the cached user is stale.
		delete(r.byMeta, p.key)
		p.hasMeta = false
		r.changed = true
	}
	retryDenied := p.denied && (ownerChanged || r.gen%uint64(r.opts.FullRescanEvery) == 0)
	if !fresh && !full && !retryDenied {
		// Known process: a denied one stays denied, and without the fd
		// count signal new sockets are found by resolveUnknown instead.
		if p.denied || !r.fdCount || st.Size == p.fdSize {
			return
		}
	}
	r.batch = append(r.batch, scanJob{pid: pid, p: p, fdSize: st.Size})
}

// resolveUnknown rescans, once, the processes that may hold sockets no
// owner was found for: those running as the uid that owns the socket, and
// not already read in this refresh. An inode still unresolved after that is
// remembered and not searched for again (it belongs to a process we may not
// read, or is being closed). It returns how many fd tables it read.
func (r *Resolver) resolveUnknown(ctx context.Context, sockets []model.Socket) int {
	if !r.changed && r.sameInodes(sockets) {
		// The same sockets as last time and the same fd tables: every
		// inode is known, or known to be unresolvable.
		for ino := range r.unknown {
			r.unknown[ino] = r.gen
		}
		r.steady = true
		return 0
	}
	r.changed = false
	r.lastInodes = r.lastInodes[:0]
	for i := range sockets {
		r.lastInodes = append(r.lastInodes, sockets[i].Inode)
	}
	var uids map[uint32]bool
	for i := range sockets {
		s := &sockets[i]
		if s.Inode == 0 {
			continue
		}
		if _, ok := r.owner[s.Inode]; ok {
			continue
		}
		if _, ok := r.unknown[s.Inode]; ok {
			r.unknown[s.Inode] = r.gen
			continue
		}
		r.unknown[s.Inode] = r.gen
		if uids == nil {
			uids = map[uint32]bool{}
		}
		uids[s.UID] = true
	}
	if len(uids) == 0 {
		return 0
	}
	r.batch = r.batch[:0]
	for pid, p := range r.procs {
		if p.denied || !uids[p.uid] || p.scanned == r.gen {
			continue
		}
		r.batch = append(r.batch, scanJob{pid: pid, p: p, fdSize: p.fdSize})
	}
	rescanned := r.scanBatch(ctx, r.batch)
	// What those scans found is settled for the sockets of this refresh.
	r.changed = false
	return rescanned
}

// sameInodes reports whether sockets list the inodes of the previous
// refresh in the same order.
func (r *Resolver) sameInodes(sockets []model.Socket) bool {
	if len(sockets) != len(r.lastInodes) {
		return false
	}
	for i := range sockets {
		if sockets[i].Inode != r.lastInodes[i] {
			return false
		}
	}
	return true
}

func (r *Resolver) addOwner(ino uint64, pid int32) {
	first, ok := r.owner[ino]
	switch {
	case !ok:
		r.owner[ino] = pid
	case first != pid:
		more := r.shared[ino]
		if more == nil {
			more = map[int32]struct{}{}
			r.shared[ino] = more
		}
		more[pid] = struct{}{}
	}
}

func (r *Resolver) removeOwner(ino uint64, pid int32) {
	more := r.shared[ino]
	if first, ok := r.owner[ino]; ok && first == pid {
		if len(more) == 0 {
			delete(r.owner, ino)
			return
		}
		for next := range more {
			r.owner[ino] = next
			delete(more, next)
			break
		}
	} else {
		delete(more, pid)
	}
	if len(more) == 0 {
		delete(r.shared, ino)
	}
}

func (r *Resolver) drop(pid int32, p *proc) {
	if len(p.sockets) > 0 {
		r.changed = true
	}
	for _, ino := range p.sockets {
		r.removeOwner(ino, pid)
	}
	if p.hasMeta {
		delete(r.byMeta, p.key)
	}
	delete(r.procs, pid)
}

// Owner returns the process that holds the socket inode and how many
// processes hold it. A socket shared by forked workers is attributed to the
// topmost holder: the one whose parent does not hold it too (the lowest pid
// on a tie). It returns nil when no readable process holds the inode.
func (r *Resolver) Owner(ino uint64) (*model.Process, int) {
	if r.steady {
		if r.memoAt < len(r.memo) && r.memo[r.memoAt].ino == ino {
			a := r.memo[r.memoAt]
			r.memoAt++
			r.memoNext = append(r.memoNext, a)
			return a.p, a.holders
		}
		r.steady = false // the calls left the previous order
	}
	p, n := r.lookupOwner(ino)
	if len(r.memoNext) < len(r.lastInodes) {
		r.memoNext = append(r.memoNext, ownerAnswer{ino: ino, p: p, holders: n})
	}
	return p, n
}

// ownerAnswer is one answer of Owner, kept for the next poll.
type ownerAnswer struct {
	ino     uint64
	p       *model.Process
	holders int
}

func (r *Resolver) lookupOwner(ino uint64) (*model.Process, int) {
	first, ok := r.owner[ino]
	if !ok || ino == 0 {
		return nil, 0
	}
	more := r.shared[ino]
	if len(more) == 0 {
		return r.process(first), 1
	}
	holds := func(pid int32) bool {
		_, ok := more[pid]
		return ok || pid == first
	}
	var best *model.Process
	consider := func(pid int32) {
		p := r.process(pid)
		if p == nil || holds(p.PPID) {
			return // a forked holder: its parent holds the socket too
		}
		if best == nil || p.PID < best.PID {
			best = p
		}
	}
	consider(first)
	for pid := range more {
		consider(pid)
	}
	return best, len(more) + 1
}

// process returns the metadata of a known pid, reading it on first use.
// What it reads must come from the process instance the listing saw: the
// inode of /proc/PID, which procfs gives each process anew, is compared
// after the read, so that a pid reused between the fd scan and now is not
// given the new process's details (the socket was found in the old one's
// fd table, or in the new one's, and there is no telling which).
func (r *Resolver) process(pid int32) *model.Process {
	p := r.procs[pid]
	if p == nil {
		return nil
	}
	if p.hasMeta {
		return p.meta
	}
	key, st, err := r.meta.key(pid, p.uid)
	if err != nil {
		return nil // exited; try again next time the socket shows up
	}
	meta, ok := r.byMeta[key]
	if !ok {
		meta = r.meta.read(key, st)
	}
	if !r.sameInstance(pid, p) {
		r.changed = true
		return nil
	}
	r.byMeta[key] = meta
	p.key, p.meta, p.hasMeta, p.checked = key, meta, true, r.gen
	return meta
}

// sameInstance reports whether /proc/PID is still the directory the
// listing found.
func (r *Resolver) sameInstance(pid int32, p *proc) bool {
	var st unix.Stat_t
	if err := unix.Fstatat(r.rootFD, strconv.Itoa(int(pid)), &st, 0); err != nil {
		return false
	}
	return st.Ino == p.dirIno
}

// Current returns the details of the process meta describes as they are
// now, for an event about to be sent. A process keeps its pid and start
// time across exec, so cached details go stale when it execs another
// program after opening the socket (bash redirecting to /dev/tcp, then
// exec sleep): the image's key is read again, once a refresh, and a
// changed image is read anew. It returns nil when another process has the
// pid now, and meta itself for a process that exited since the poll.
func (r *Resolver) Current(meta *model.Process) *model.Process {
	if meta == nil {
		return nil
	}
	p := r.procs[meta.PID]
	if p == nil || !p.hasMeta {
		return meta
	}
	if p.checked == r.gen {
		return p.meta
	}
	p.checked = r.gen
	key, st, err := r.meta.key(meta.PID, p.uid)
	switch {
	case err != nil:
		return p.meta
	case key == p.key:
		return p.meta
	case key.start != p.key.start:
		r.changed = true
		return nil
	}
	fresh := r.meta.read(key, st)
	if !r.sameInstance(meta.PID, p) {
		r.changed = true
		return nil
	}
	delete(r.byMeta, p.key)
	r.byMeta[key] = fresh
	p.key, p.meta = key, fresh
	// The previous poll's answers hold the old details.
	r.changed = true
	return fresh
}
