package procs

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/dirent"
)

// maxScanWorkers bounds the goroutines reading fd tables at once. Reading
// is all system calls (a readlink per fd); a few threads cut the first
// poll's wall time on a busy host without hogging it.
const maxScanWorkers = 4

// scanJob is one fd table to read and what reading it found. Workers fill
// found, opened and denied; the inode maps are updated afterwards, in job
// order, by one goroutine.
type scanJob struct {
	pid    int32
	p      *proc
	fdSize int64 // st_size of the fd directory when the job was queued
	found  []uint64
	read   bool // a worker got to it (not when the poll was cancelled)
	opened bool // the fd directory could be opened
	denied bool
}

// fdReader holds one worker's buffers.
type fdReader struct {
	dirBuf  []byte
	linkBuf []byte
	nameBuf []byte // fd name, NUL-terminated, for readlinkat
	pathBuf []byte // "PID/fd", NUL-terminated
}

func newFDReader() *fdReader {
	return &fdReader{
		dirBuf:  make([]byte, 32<<10),
		linkBuf: make([]byte, 128),
		nameBuf: make([]byte, 0, 16),
		pathBuf: make([]byte, 0, 32),
	}
}

// scanBatch reads the fd tables of jobs, in parallel when there are
// several, then applies what was found. It returns how many it read.
func (r *Resolver) scanBatch(ctx context.Context, jobs []scanJob) int {
	workers := min(len(jobs), runtime.GOMAXPROCS(0), maxScanWorkers)
	for len(r.readers) < max(workers, 1) {
		r.readers = append(r.readers, newFDReader())
	}
	if workers <= 1 {
		for i := range jobs {
			r.readers[0].read(r.rootFD, &jobs[i])
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func(fr *fdReader) {
				defer wg.Done()
				for ctx.Err() == nil {
					i := int(next.Add(1)) - 1
					if i >= len(jobs) {
						return
					}
					fr.read(r.rootFD, &jobs[i])
				}
			}(r.readers[w])
		}
		wg.Wait()
	}
	for i := range jobs {
		r.apply(&jobs[i])
		jobs[i] = scanJob{} // drop references for the reused batch
	}
	return len(jobs)
}

// read lists one process's fd directory and follows every link, keeping
// the inodes of sockets. It touches nothing but the job and its buffers.
func (fr *fdReader) read(rootFD int, j *scanJob) {
	j.read = true
	fd, err := fr.openFDDir(rootFD, j.pid)
	if err != nil {
		j.denied = errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
		return
	}
	defer unix.Close(fd)
	j.opened = true
	j.found = make([]uint64, 0, len(j.p.sockets)+4)
	for !j.denied {
		n, err := unix.Getdents(fd, fr.dirBuf)
		if err != nil || n <= 0 {
			break // the process exited mid-read: keep what we have
		}
		_ = dirent.Parse(fr.dirBuf[:n], func(_ uint64, name []byte) {
			if j.denied || len(name) == 0 || name[0] == '.' {
				return
			}
			ln, err := fr.readlink(fd, name)
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				// Listing is allowed but following the links is not
				// (ptrace access check): the whole table is unreadable.
				j.denied = true
				return
			}
			if err != nil || ln <= 0 {
				return // the fd was closed since the listing
			}
			if ino, ok := parseSocketLink(fr.linkBuf[:ln]); ok {
				j.found = append(j.found, ino)
			}
		})
	}
}

// apply records what a job found in the inode maps.
func (r *Resolver) apply(j *scanJob) {
	p := j.p
	if !j.read {
		return // cancelled before its turn: the next refresh reads it
	}
	p.scanned = r.gen
	p.fdSize = j.fdSize
	// Only a change of who holds which socket changes an owner: a new
	// process without sockets (a cron job, a shell) leaves the host's
	// owners as they were.
	if p.denied != j.denied {
		r.changed = true
	}
	p.denied = j.denied
	if !j.opened {
		return
	}
	if !slices.Equal(p.sockets, j.found) {
		r.changed = true
	}
	for _, ino := range p.sockets {
		r.removeOwner(ino, j.pid)
	}
	for _, ino := range j.found {
		r.addOwner(ino, j.pid)
		delete(r.unknown, ino)
	}
	p.sockets = j.found
}
