package netlink

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// recvBufLen is the user buffer of each recv. The kernel fills one
	// skb of at most 32 KiB per dump step, so this never truncates.
	recvBufLen = 64 << 10
	// socketRcvBuf lets the kernel queue several dump skbs ahead of us.
	socketRcvBuf = 1 << 20
	// recvTimeout bounds a recv so a kernel that never ends a dump cannot
	// hang the poll loop.
	recvTimeout = 10 * time.Second
)

// conn is one NETLINK_SOCK_DIAG socket, kept open between polls.
type conn struct {
	fd  int
	seq uint32
	req []byte
	buf []byte
}

func dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_NETLINK, NETLINK_SOCK_DIAG): %w", err)
	}
	// SO_RCVBUFFORCE passes rmem_max when we have CAP_NET_ADMIN; the plain
	// option is capped by it. Either way a small buffer only slows dumps.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketRcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketRcvBuf)
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting SO_RCVTIMEO on the sock_diag socket: %w", err)
	}
	return &conn{fd: fd, req: make([]byte, 0, headerLen+compatRequestLen), buf: make([]byte, recvBufLen)}, nil
}

func (c *conn) close() error { return unix.Close(c.fd) }

// send writes a request (flags flagDump for a dump, 0 for one socket) and
// returns its sequence number.
func (c *conn) send(r *request, flags uint16) (uint32, error) {
	c.seq++
	c.req = r.appendDatagram(c.req[:0], c.seq, flags)
	for {
		// An unconnected netlink socket writes to the kernel (port 0).
		n, err := unix.Write(c.fd, c.req)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("sending sock_diag request: %w", err)
		}
		if n != len(c.req) {
			return 0, fmt.Errorf("sending sock_diag request: wrote %d of %d bytes", n, len(c.req))
		}
		return c.seq, nil
	}
}

// recv reads one datagram into the reused buffer. It uses recvfrom with
// MSG_TRUNC, without a source address, so that it allocates nothing and a
// datagram larger than the buffer is detected instead of silently cut.
func (c *conn) recv() ([]byte, error) {
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(c.fd),
			uintptr(unsafe.Pointer(&c.buf[0])), uintptr(len(c.buf)), unix.MSG_TRUNC, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return nil, fmt.Errorf("no sock_diag answer within %s: %w", recvTimeout, errno)
		case errno != 0:
			return nil, fmt.Errorf("receiving sock_diag dump: %w", errno)
		case int(r) > len(c.buf):
			return nil, fmt.Errorf("sock_diag datagram of %d bytes does not fit the %d-byte buffer", r, len(c.buf))
		}
		return c.buf[:r], nil
	}
}
