// Package bpfiter lists TCP and UDP sockets through BPF iterators over the
// kernel's socket tables (the "tcp" and "udp" bpf_iters, Linux 5.9 and
// later). Small programs (iter.bpf.c, compiled ahead of time with CO-RE
// relocations and embedded; the running kernel's BTF places their fields
// at load) write one fixed 56-byte record a socket: a poll costs one walk
// of each table and a copy, where a sock_diag dump builds a netlink
// message with attributes for every socket.
//
// It needs CAP_BPF and CAP_PERFMON (or root) and a kernel with BTF; where
// any of that is missing, Open returns a *model.UnavailableError and
// the agent uses the netlink source.
package bpfiter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/connbeat/connbeat/model"
)

// Name is the source's name in logs and configuration.
const Name = "bpf"

// readSize is the buffer one read fills; the kernel hands over at most its
// seq_file buffer (8 pages) a read.
const readSize = 64 << 10

// Source reads sockets through attached iterator links, one iterator
// instance of each a poll. It is not safe for concurrent use.
type Source struct {
	iters
	buf []byte
	// records counts the records of the last poll; skipped those
	// that did not decode.
	records, skipped int
}

// Options configure a Source.
type Options struct {
	// Transports are the transports to list; the zero value lists all. A
	// transport left out costs nothing: its program is not even loaded.
	Transports model.Transports
}

// Open loads the iterator programs of TCP and UDP and attaches them. The
// kernel's BTF is read (mapped, decoded lazily) for it and not kept. The
// tcp program's inode cache takes 2 MiB of kernel memory.
func Open() (*Source, error) { return OpenWith(Options{}) }

// OpenWith is Open for the transports opts names.
func OpenWith(opts Options) (*Source, error) { return open(cacheSlots, opts.Transports) }

// open is OpenWith with an inode cache of slots entries, a power of two.
func open(slots uint32, transports model.Transports) (*Source, error) {
	if slots == 0 || slots&(slots-1) != 0 {
		return nil, fmt.Errorf("bpf source: inode cache of %d slots, want a power of two", slots)
	}
	it, err := load(slots, transports.OrAll())
	if err != nil {
		return nil, unavailable(err)
	}
	s := &Source{iters: it, buf: make([]byte, readSize)}
	// Read once, so that a kernel that loads the program but cannot run
	// the iterator is found out now rather than at the first poll.
	if _, err := s.Sockets(context.Background(), nil); err != nil {
		s.Close()
		return nil, &model.UnavailableError{Source: Name, Err: err}
	}
	return s, nil
}

// unavailable wraps a failure to load or attach, saying which privileges
// are missing when that is the cause.
func unavailable(err error) error {
	hint := ""
	// The verifier's refusal is EACCES too, but no privilege cures it.
	var verr *ebpf.VerifierError
	if errors.Is(err, os.ErrPermission) && !errors.As(err, &verr) {
		hint = " (needs CAP_BPF and CAP_PERFMON, or root)"
	}
	return &model.UnavailableError{Source: Name, Err: fmt.Errorf("%w%s", err, hint)}
}

func load(slots uint32, transports model.Transports) (iters, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return iters{}, fmt.Errorf("kernel BTF: %w", err)
	}
	return attach(spec, slots, transports)
}

// Name implements connections.Source.
func (s *Source) Name() string { return Name }

// Close implements connections.Source.
func (s *Source) Close() error { return s.iters.close() }

// Skipped returns how many records of the last poll did not decode (an
// unknown transport, state or family); they are left out of the result.
func (s *Source) Skipped() int { return s.skipped }

// Anomalies implements the connections package's counter of records a
// poll read but could not use: the records that did not decode.
func (s *Source) Anomalies() int { return s.skipped }

// Sockets implements connections.Source: one walk of each transport's
// socket tables of the agent's network namespace, IPv4 and IPv6 together.
func (s *Source) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	if s.tcp == nil && s.udp == nil {
		return dst, errors.New("bpf source closed")
	}
	s.records, s.skipped = 0, 0
	for _, it := range [...]struct {
		name string
		link *link.Iter
	}{{"tcp", s.tcp}, {"udp", s.udp}} {
		if it.link == nil {
			continue
		}
		var err error
		var records, skipped int
		dst, records, skipped, err = s.walk(ctx, it.link, dst)
		s.records += records
		s.skipped += skipped
		if err != nil {
			return dst, fmt.Errorf("%s iterator: %w", it.name, err)
		}
	}
	return dst, nil
}

// walk reads one instance of an iterator to its end.
func (s *Source) walk(ctx context.Context, l *link.Iter, dst []model.Socket) ([]model.Socket, int, int, error) {
	r, err := l.Open()
	if err != nil {
		return dst, 0, 0, fmt.Errorf("starting: %w", err)
	}
	defer r.Close()
	return readRecords(ctx, r, s.buf, dst)
}

// readRecords decodes the records r yields, read into buf (which must
// hold at least one record), appending the sockets to dst; a record split
// across reads is put together again. Records that do not decode are
// counted as skipped and left out; only a read where every record failed
// is an error, as is a read that ends inside a record.
func readRecords(ctx context.Context, r io.Reader, buf []byte, dst []model.Socket) (_ []model.Socket, records, skipped int, _ error) {
	if len(buf) < recLen {
		return dst, 0, 0, fmt.Errorf("read buffer of %d bytes, want at least %d", len(buf), recLen)
	}
	var firstErr error
	have := 0 // bytes of an incomplete record carried to the next read
	for {
		if err := ctx.Err(); err != nil {
			return dst, records, skipped, err
		}
		n, err := r.Read(buf[have:])
		have += n
		whole := have - have%recLen
		for off := 0; off < whole; off += recLen {
			records++
			sock, derr := decodeRecord(buf[off : off+recLen])
			if derr != nil {
				skipped++
				if firstErr == nil {
					firstErr = derr
				}
				continue
			}
			dst = append(dst, sock)
		}
		have = copy(buf, buf[whole:have])
		if err == io.EOF || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return dst, records, skipped, fmt.Errorf("reading: %w", err)
		}
	}
	if have != 0 {
		return dst, records, skipped, fmt.Errorf("ended inside a record (%d bytes over)", have)
	}
	if skipped == records && firstErr != nil {
		return dst, records, skipped, fmt.Errorf("no record decoded: %w", firstErr)
	}
	return dst, records, skipped, nil
}
