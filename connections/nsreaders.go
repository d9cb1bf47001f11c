package connections

import (
	"context"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/connections/netns"
	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/model"
)

// maxKeptNetlink bounds the sock_diag sockets kept open for namespaces
// other than the agent's, one each, so that a namespace's next poll
// reuses its socket and buffers; namespaces beyond it get a socket for
// their read only. A kept socket holds its namespace until the first poll
// that no longer finds it.
const maxKeptNetlink = 256

// netlinkReader reads each namespace through a sock_diag socket opened in
// it: a netlink socket belongs to the namespace it was created in.
type netlinkReader struct {
	opts   netlink.Options
	own    *netlink.Source
	others map[uint64]*netlink.Source
	last   *netlink.Source
}

func (r *netlinkReader) name() string { return netlink.Name }

func (r *netlinkReader) enter(ns netns.Namespace) bool { return !ns.Own }

func (r *netlinkReader) read(ctx context.Context, ns netns.Namespace, dst []model.Socket) ([]model.Socket, error) {
	if ns.Own {
		r.last = r.own
		return r.own.Sockets(ctx, dst)
	}
	src := r.others[ns.Inode]
	if src == nil {
		var err error
		if src, err = netlink.Open(r.opts); err != nil {
			r.last = nil
			return dst, fmt.Errorf("netlink in network namespace %d: %w", ns.Inode, err)
		}
		if len(r.others) < maxKeptNetlink {
			r.others[ns.Inode] = src
		} else {
			defer src.Close()
		}
	}
	r.last = src
	return src.Sockets(ctx, dst)
}

func (r *netlinkReader) anomalies() int {
	if r.last == nil {
		return 0
	}
	return r.last.Anomalies()
}

func (r *netlinkReader) prune(live map[uint64]struct{}) {
	for ino, src := range r.others {
		if _, ok := live[ino]; !ok {
			src.Close()
			delete(r.others, ino)
		}
	}
}

func (r *netlinkReader) close() error {
	for ino, src := range r.others {
		src.Close()
		delete(r.others, ino)
	}
	return r.own.Close()
}

// bpfReader reads every namespace through the one loaded iterator: an
// iterator instance walks the socket tables of the namespace its creator
// is in, so each read starts one inside the namespace.
type bpfReader struct {
	src *bpfiter.Source
}

func (r *bpfReader) name() string { return bpfiter.Name }

// enter is true for the agent's namespace too: the reading thread may
// have come from elsewhere.
func (r *bpfReader) enter(netns.Namespace) bool { return true }

func (r *bpfReader) read(ctx context.Context, _ netns.Namespace, dst []model.Socket) ([]model.Socket, error) {
	return r.src.Sockets(ctx, dst)
}

func (r *bpfReader) anomalies() int { return r.src.Anomalies() }

func (r *bpfReader) prune(map[uint64]struct{}) {}

func (r *bpfReader) close() error { return r.src.Close() }

// procfsReader reads /proc/PID/net/tcp{,6} of a process in each
// namespace, which needs no setns; a named namespace that no process
// holds is entered and read through /proc/thread-self/net.
type procfsReader struct {
	procPath string
	own      *procfs.Source
}

func (r *procfsReader) name() string { return procfs.Name }

func (r *procfsReader) enter(ns netns.Namespace) bool { return !ns.Own && ns.PID == 0 }

func (r *procfsReader) read(ctx context.Context, ns netns.Namespace, dst []model.Socket) ([]model.Socket, error) {
	if ns.Own {
		return r.own.Sockets(ctx, dst)
	}
	dir := r.procPath + "/thread-self"
	if ns.PID != 0 {
		dir = r.procPath + "/" + strconv.Itoa(ns.PID)
	}
	src, err := procfs.Open(dir)
	if err != nil {
		return dst, err
	}
	n := len(dst)
	out, err := src.Sockets(ctx, dst)
	if err != nil || ns.PID == 0 {
		return out, err
	}
	// The process may have exited during the read and its pid gone to a
	// process of another namespace: keep the read only if the pid still
	// shows the namespace.
	var link [64]byte
	k, err := unix.Readlink(dir+"/ns/net", link[:])
	if err != nil {
		k = 0
	}
	if ino, ok := netns.ParseLink(link[:k]); !ok || ino != ns.Inode {
		// ESRCH: counted as a namespace that vanished, not a failure.
		return out[:n], fmt.Errorf("network namespace %d: process %d left it during the read: %w", ns.Inode, ns.PID, unix.ESRCH)
	}
	return out, nil
}

func (r *procfsReader) anomalies() int { return 0 }

func (r *procfsReader) prune(map[uint64]struct{}) {}

func (r *procfsReader) close() error { return r.own.Close() }
