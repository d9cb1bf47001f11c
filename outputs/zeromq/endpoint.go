package zeromq

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// maxIPCPath is the longest path a Unix socket address holds (sun_path is
// 108 bytes including the terminating NUL).
const maxIPCPath = 107

// endpoint is a parsed ZeroMQ endpoint, in the terms of Go's net package.
type endpoint struct {
	network string // "tcp" or "unix"
	address string // host:port, or the socket path (@name: abstract)
	raw     string // as configured
}

// parseEndpoint reads a ZeroMQ endpoint as libzmq writes it:
// tcp://host:port (host `*` = every address, only to bind; port 0 = any
// free port, only to bind) or ipc://path (ipc://@name for Linux's abstract
// namespace).
func parseEndpoint(s string, bind bool) (endpoint, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return endpoint{}, fmt.Errorf("%q is not tcp://host:port or ipc://path", s)
	}
	switch scheme {
	case "tcp":
		return parseTCP(s, rest, bind)
	case "ipc":
		switch {
		case rest == "":
			return endpoint{}, fmt.Errorf("%q has no socket path", s)
		case len(rest) > maxIPCPath:
			return endpoint{}, fmt.Errorf("%q: the socket path is longer than %d bytes", s, maxIPCPath)
		case strings.ContainsRune(rest, 0):
			return endpoint{}, fmt.Errorf("%q: the socket path contains a NUL byte", s)
		case rest == "@":
			return endpoint{}, fmt.Errorf("%q: an abstract socket needs a name after @", s)
		}
		return endpoint{network: "unix", address: rest, raw: s}, nil
	default:
		return endpoint{}, fmt.Errorf("%q: transport %q is not supported (use tcp:// or ipc://)", s, scheme)
	}
}

func parseTCP(s, hostport string, bind bool) (endpoint, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q is not tcp://host:port: %w", s, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	if n == 0 && !bind {
		return endpoint{}, fmt.Errorf("%q: port 0 is only valid with bind: true", s)
	}
	switch {
	case host == "*":
		if !bind {
			return endpoint{}, fmt.Errorf("%q: host * is only valid with bind: true", s)
		}
		host = ""
	case host == "":
		return endpoint{}, fmt.Errorf("%q has no host (use * to bind every address)", s)
	case !validIP(host) && !validHostname(host):
		return endpoint{}, fmt.Errorf("%q: %q is neither an IP address nor a host name", s, host)
	}
	return endpoint{network: "tcp", address: net.JoinHostPort(host, port), raw: s}, nil
}

// validIP reports whether h is an IPv4 or IPv6 address (with a zone, as
// in fe80::1%eth0).
func validIP(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}

// validHostname reports whether h is a DNS name (letters, digits, hyphens
// and dots; labels of 1 to 63 bytes).
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// String gives the endpoint as configured.
func (e endpoint) String() string { return e.raw }
