package flowjoin

import (
	"net"
	"net/netip"
	"time"

	"github.com/elastic/elastic-agent-libs/logp"
)

// localsMaxAge is how long the host's address list is trusted: addresses
// come and go with DHCP, VPNs and containers.
const localsMaxAge = 5 * time.Second

// locals is the set of this host's addresses (in the agent's network
// namespace), read again when older than localsMaxAge.
type locals struct {
	read  func() ([]netip.Addr, error)
	set   map[netip.Addr]struct{}
	at    time.Time
	erred bool
}

func newLocals(read func() ([]netip.Addr, error)) *locals {
	return &locals{read: read, set: map[netip.Addr]struct{}{}}
}

func (l *locals) refresh(log *logp.Logger) {
	if time.Since(l.at) < localsMaxAge {
		return
	}
	l.at = time.Now()
	addrs, err := l.read()
	if err != nil {
		if !l.erred {
			log.Warnf("conntrack: cannot list this host's addresses, flow directions may be wrong: %v", err)
			l.erred = true
		}
		return
	}
	clear(l.set)
	for _, a := range addrs {
		l.set[a.Unmap()] = struct{}{}
	}
}

// has reports whether a is an address of this host; all of 127.0.0.0/8
// and ::1 are.
func (l *locals) has(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	_, ok := l.set[a]
	return ok
}

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
