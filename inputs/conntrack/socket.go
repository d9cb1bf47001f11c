package conntrack

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// ctnetlink's multicast groups (NFNLGRP_CONNTRACK_*).
const (
	groupNew     = 1
	groupUpdate  = 2
	groupDestroy = 3
)

// recvBufLen is the user buffer of each recv. An event is one small
// message and a dump step fills at most one skb of a page or two, so this
// never truncates; a datagram that did not fit would be reported, not cut.
const recvBufLen = 64 << 10

// errTimeout is returned by recv when the deadline passed with nothing to
// read.
var errTimeout = errors.New("no message before the deadline")

// socket is one NETLINK_NETFILTER socket, non-blocking and registered with
// Go's poller, so a blocked receive wakes when the socket is closed.
type socket struct {
	f    *os.File
	fd   int
	ino  uint64 // the socket's inode, its key in /proc/net/netlink
	buf  []byte
	rbuf int    // the receive buffer the kernel granted
	seq  uint32 // of the last request sent
}

// openSocket opens a socket connected to the kernel. Connecting makes the
// kernel refuse unicasts from other processes' netlink sockets, which
// could otherwise inject made-up events (any local user may unicast to a
// netlink port).
func openSocket() (*socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_NETLINK, NETLINK_NETFILTER): %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connecting the ctnetlink socket to the kernel: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fstat of the ctnetlink socket: %w", err)
	}
	return &socket{f: os.NewFile(uintptr(fd), "ctnetlink"), fd: fd, ino: st.Ino, buf: make([]byte, recvBufLen)}, nil
}

func (s *socket) close() error { return s.f.Close() }

// join subscribes to ctnetlink's event groups. The kernel asks for
// CAP_NET_ADMIN (in the socket's network namespace); the error says so.
func (s *socket) join(groups []int) error {
	for _, g := range groups {
		err := unix.SetsockoptInt(s.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("subscribing to conntrack events needs CAP_NET_ADMIN: %w", err)
		}
		if err != nil {
			return fmt.Errorf("subscribing to ctnetlink group %d: %w", g, err)
		}
	}
	return nil
}

// setReceiveBuffer asks for size bytes of receive buffer: with
// SO_RCVBUFFORCE, which CAP_NET_ADMIN lets pass net.core.rmem_max, else
// with SO_RCVBUF, capped by it. It returns what the kernel granted (it
// doubles the request for its bookkeeping).
func (s *socket) setReceiveBuffer(size int) (int, error) {
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size); err != nil {
			return 0, fmt.Errorf("setting the ctnetlink receive buffer: %w", err)
		}
	}
	got, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return 0, fmt.Errorf("reading the ctnetlink receive buffer: %w", err)
	}
	s.rbuf = got
	return got, nil
}

// send writes one request to the kernel.
func (s *socket) send(b []byte) error {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), b)
		return !errors.Is(werr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("sending a ctnetlink request: %w", werr)
	}
	return nil
}

// recv reads one datagram into the socket's buffer. With wait it waits
// until deadline (zero: forever) for one and returns errTimeout after;
// without, it returns unix.EAGAIN when none is queued. unix.ENOBUFS means
// the kernel dropped messages because the buffer was full: the socket
// stays usable and the next recv reads what is still queued.
func (s *socket) recv(wait bool, deadline time.Time) ([]byte, error) {
	if !wait {
		return s.recvNow()
	}
	if err := s.f.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	rc, err := s.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		b    []byte
		rerr error
	)
	err = rc.Read(func(uintptr) bool {
		b, rerr = s.recvNow()
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, errTimeout
	}
	if err != nil {
		return nil, err
	}
	return b, rerr
}

// recvNow is one non-blocking recvfrom without a source address, so that
// it allocates nothing; MSG_TRUNC makes a datagram larger than the buffer
// show as such instead of being cut silently.
func (s *socket) recvNow() ([]byte, error) {
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd),
			uintptr(unsafe.Pointer(&s.buf[0])), uintptr(len(s.buf)), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return nil, errno
		case int(r) > len(s.buf):
			return nil, fmt.Errorf("ctnetlink datagram of %d bytes does not fit the %d-byte buffer", r, len(s.buf))
		}
		return s.buf[:r], nil
	}
}

// groupsFor maps the configured event types to ctnetlink groups.
func groupsFor(events []model.FlowEvent) []int {
	var groups []int
	for _, e := range events {
		switch e {
		case model.FlowNew:
			groups = append(groups, groupNew)
		case model.FlowUpdate:
			groups = append(groups, groupUpdate)
		case model.FlowDestroy:
			groups = append(groups, groupDestroy)
		}
	}
	return groups
}
