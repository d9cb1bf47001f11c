package procfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"

	"github.com/connbeat/connbeat/model"
	"github.com/prometheus/procfs"
)

// Name is the source's name in logs and configuration.
const Name = "procfs"

// Source reads /proc/net/tcp and /proc/net/tcp6 through prometheus/procfs.
// It is the portable fallback: it walks the kernel's whole socket hash on
// every read and cannot give tcp_info.
type Source struct {
	fs procfs.FS
}

// Open returns a source that reads the net files under root (usually
// /proc; the network namespace is that of the reading process).
func Open(root string) (*Source, error) {
	fsys, err := procfs.NewFS(root)
	if err != nil {
		return nil, &model.UnavailableError{Source: Name, Err: err}
	}
	return &Source{fs: fsys}, nil
}

// Name implements connections.Source.
func (p *Source) Name() string { return Name }

// Close implements connections.Source.
func (p *Source) Close() error { return nil }

// Sockets implements connections.Source. A missing tcp6 file (IPv6 disabled) is not an
// error; a missing tcp file is.
func (p *Source) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	v4, err := p.fs.NetTCP()
	if err != nil {
		return dst, fmt.Errorf("reading net/tcp: %w", err)
	}
	dst = appendNetTCP(dst, v4)
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	v6, err := p.fs.NetTCP6()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return dst, nil
		}
		return dst, fmt.Errorf("reading net/tcp6: %w", err)
	}
	return appendNetTCP(dst, v6), nil
}

func appendNetTCP(dst []model.Socket, lines procfs.NetTCP) []model.Socket {
	for _, l := range lines {
		s := model.Socket{
			LocalIP:    addrFromIP(l.LocalAddr),
			RemoteIP:   addrFromIP(l.RemAddr),
			LocalPort:  uint16(l.LocalPort),
			RemotePort: uint16(l.RemPort),
			State:      model.State(l.St),
			UID:        uint32(l.UID),
			Inode:      l.Inode,
		}
		if !s.LocalIP.IsValid() || !s.State.Valid() || l.LocalPort > 0xffff || l.RemPort > 0xffff {
			// procfs accepted a line the kernel would not write; skip it
			// rather than report a socket with a made-up address or state.
			continue
		}
		dst = append(dst, s)
	}
	return dst
}

func addrFromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}
