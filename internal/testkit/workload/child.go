package workload

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit/child"
)

// Helper is the workload's child process. A program that starts a
// workload serves it first thing in main (or TestMain):
// child.Serve(workload.Helper()).
func Helper() child.Helper {
	return child.Helper{Name: "workload", Main: runChild}
}

// runChild opens the connections of the spec in args, says "ready", holds
// them until its stdin closes, and returns.
func runChild(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one spec argument, got %q", args)
	}
	spec, err := decodeSpec(args[0])
	if err != nil {
		return err
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	fds, err := hold(spec)
	if err != nil {
		return err
	}
	fmt.Printf("ready %d\n", len(fds))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// hold opens the spec's listeners and connections with plain blocking
// syscalls (no runtime poller registration) and returns their fds.
func hold(spec Spec) ([]int, error) {
	fds := make([]int, 0, spec.Listeners+2*spec.Conns)
	ln4, err := listen(unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if err != nil {
		return nil, err
	}
	ln6, err := listen(unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}})
	if err != nil {
		return nil, err
	}
	fds = append(fds, ln4, ln6)
	for i := 2; i < spec.Listeners; i++ {
		// Idle listeners, as a host runs services nobody talks to.
		fd, err := listen(unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
		if err != nil {
			return nil, err
		}
		fds = append(fds, fd)
	}
	to4, err := unix.Getsockname(ln4)
	if err != nil {
		return nil, err
	}
	to6, err := unix.Getsockname(ln6)
	if err != nil {
		return nil, err
	}
	for i := 0; i < spec.Conns; i++ {
		family, ln, to := unix.AF_INET, ln4, to4
		if spec.IPv6Every > 0 && i%spec.IPv6Every == spec.IPv6Every-1 {
			family, ln, to = unix.AF_INET6, ln6, to6
		}
		c, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("connection %d: socket: %w", i, err)
		}
		if err := unix.Connect(c, to); err != nil {
			return nil, fmt.Errorf("connection %d: connect: %w", i, err)
		}
		a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("connection %d: accept: %w", i, err)
		}
		// Reset instead of FIN on exit: no TIME_WAIT sockets outlive the
		// child to skew the next measurement.
		for _, fd := range [...]int{c, a} {
			if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
				return nil, fmt.Errorf("connection %d: SO_LINGER: %w", i, err)
			}
		}
		fds = append(fds, c, a)
	}
	return fds, nil
}

func listen(family int, addr unix.Sockaddr) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("listener socket: %w", err)
	}
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := unix.Bind(fd, addr); err != nil {
		return 0, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 1024); err != nil {
		return 0, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

// loopbackUp sets lo up when it is down, as it is in a new network
// namespace (NetnsPerProcess); elsewhere it changes nothing and needs no
// privilege.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for ioctl: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("setting lo up: %w", err)
	}
	return nil
}
