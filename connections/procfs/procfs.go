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

// Source reads /proc/net/tcp, tcp6, udp and udp6 through
// prometheus/procfs. It is the portable fallback: it walks the kernel's
// whole socket hash on every read and cannot give tcp_info.
type Source struct {
	fs         procfs.FS
	transports model.Transports
}

// Options configure a Source.
type Options struct {
	// Transports are the transports to list; the zero value lists all.
	// A transport left out costs nothing: its files are not read.
	Transports model.Transports
}

// Open returns a source that reads the net files under root (usually
// /proc; the network namespace is that of the reading process), TCP and
// UDP.
func Open(root string) (*Source, error) { return OpenWith(root, Options{}) }

// OpenWith is Open for the transports opts names.
func OpenWith(root string, opts Options) (*Source, error) {
	fsys, err := procfs.NewFS(root)
	if err != nil {
		return nil, &model.UnavailableError{Source: Name, Err: err}
	}
	return &Source{fs: fsys, transports: opts.Transports.OrAll()}, nil
}

// Name implements connections.Source.
func (p *Source) Name() string { return Name }

// Close implements connections.Source.
func (p *Source) Close() error { return nil }

// Sockets implements connections.Source. A missing tcp6 or udp6 file
// (IPv6 disabled) is not an error; a missing tcp file is. A missing udp
// file is not either: the kernel always has one, so a tree without it (a
// copy of /proc, a test's fixture) has no UDP sockets to show.
func (p *Source) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	if p.transports.Has(model.TCP) {
		v4, err := guard(p.fs.NetTCP)
		if err != nil {
			return dst, fmt.Errorf("reading net/tcp: %w", err)
		}
		dst = appendLines(dst, v4, model.TCP)
		if err := ctx.Err(); err != nil {
			return dst, err
		}
		v6, err := guard(p.fs.NetTCP6)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return dst, fmt.Errorf("reading net/tcp6: %w", err)
		}
		dst = appendLines(dst, v6, model.TCP)
	}
	if !p.transports.Has(model.UDP) {
		return dst, nil
	}
	for _, f := range [...]struct {
		name string
		read func() (procfs.NetUDP, error)
	}{{"net/udp", p.fs.NetUDP}, {"net/udp6", p.fs.NetUDP6}} {
		if err := ctx.Err(); err != nil {
			return dst, err
		}
		lines, err := guard(f.read)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return dst, fmt.Errorf("reading %s: %w", f.name, err)
		}
		// net/udp and net/tcp share their line format and its parser.
		dst = appendLines(dst, procfs.NetTCP(lines), model.UDP)
	}
	return dst, nil
}

// guard runs one of prometheus/procfs's readers, turning a panic into an
// error: v0.23.0 reads the drops column of a line it takes for UDP (any
// file whose path contains "udp") without checking that the line has one,
// so a short line panics.
func guard[T any](read func() (T, error)) (lines T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed line: %v", r)
		}
	}()
	return read()
}

func appendLines(dst []model.Socket, lines procfs.NetTCP, transport model.Transport) []model.Socket {
	for _, l := range lines {
		s := model.Socket{
			LocalIP:    addrFromIP(l.LocalAddr),
			RemoteIP:   addrFromIP(l.RemAddr),
			LocalPort:  uint16(l.LocalPort),
			RemotePort: uint16(l.RemPort),
			State:      model.State(l.St),
			Transport:  transport,
			UID:        uint32(l.UID),
			Inode:      l.Inode,
		}
		if !s.LocalIP.IsValid() || !transport.HasState(s.State) || l.LocalPort > 0xffff || l.RemPort > 0xffff {
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
