// Package netlink lists TCP and UDP sockets through the kernel's sock_diag
// netlink interface (inet_diag dumps), the fast socket source: the kernel
// hands over binary records instead of formatting /proc/net/tcp text, and
// can add each TCP socket's tcp_info.
package netlink

import (
	"context"
	"errors"
	"fmt"

	"github.com/connbeat/connbeat/model"
	"golang.org/x/sys/unix"
)

// Name is the source's name in logs and configuration.
const Name = "netlink"

// allStates asks for every TCP state (bits 1..12 of the state mask), as
// /proc/net/tcp lists them all: TIME_WAIT sockets (inode 0, no owner) and
// pending connections (SYN_RECV) included, so both sources report the same
// sockets for the same host.
const allStates = 0x1ffe

// maxIntrRetries bounds the dumps redone because the kernel flagged one
// NLM_F_DUMP_INTR; after that the last dump is used as it is.
const maxIntrRetries = 3

// Options configure a Source.
type Options struct {
	// TCPInfo asks the kernel for each TCP socket's tcp_info; connections
	// (not listeners) then carry Socket.Info.
	TCPInfo bool
	// Transports are the transports to dump; the zero value dumps all. A
	// transport left out costs nothing: no dump of it is requested.
	Transports model.Transports

	// perFamily skips the single TCPDIAG_GETSOCK dump even where the
	// kernel answers it, so tests can compare both kinds of dump.
	perFamily bool
}

// Source dumps TCP and UDP sockets over one NETLINK_SOCK_DIAG socket that
// it keeps open and reuses, with reused buffers. It is not safe for
// concurrent use.
type Source struct {
	opts Options
	conn *conn // nil after a failed dump; reopened on the next call
	dec  decoder
	// reqs are the dumps of one poll: for TCP a single TCPDIAG_GETSOCK
	// dump of both families, or one inet_diag_req_v2 dump per family; for
	// UDP one inet_diag_req_v2 dump per family.
	reqs []request
	// interrupted counts dumps the kernel flagged as interrupted.
	interrupted int
}

// Open returns a netlink source after checking that the kernel answers a
// dump request of each transport it is to list. When it does not (no
// sock_diag support, a seccomp policy, a missing tcp_diag or udp_diag
// module) the error is a *model.UnavailableError.
func Open(opts Options) (*Source, error) {
	opts.Transports = opts.Transports.OrAll()
	c, err := dial()
	if err != nil {
		return nil, &model.UnavailableError{Source: Name, Err: err}
	}
	s := &Source{opts: opts, conn: c, dec: decoder{wantInfo: opts.TCPInfo}}
	if opts.Transports.Has(model.TCP) {
		if err := s.openTCP(); err != nil {
			s.Close()
			return nil, &model.UnavailableError{Source: Name, Err: err}
		}
	}
	if opts.Transports.Has(model.UDP) {
		// The same cheap probe: an empty state mask.
		probe := request{Family: familyINET, Protocol: protoUDP}
		if err := s.dump(context.Background(), &probe); err != nil {
			s.Close()
			return nil, &model.UnavailableError{Source: Name, Err: fmt.Errorf("UDP dump (udp_diag): %w", err)}
		}
		// UDP sockets have two states, CLOSE and ESTABLISHED; the full
		// mask costs nothing more and lists whatever the kernel has.
		s.reqs = append(s.reqs,
			request{Family: familyINET, Protocol: protoUDP, States: allStates},
			request{Family: familyINET6, Protocol: protoUDP, States: allStates})
	}
	return s, nil
}

// openTCP probes the kernel's TCP dumps and sets the requests of one.
func (s *Source) openTCP() error {
	opts := s.opts
	var ext uint8
	if opts.TCPInfo {
		ext = 1 << (attrInfo - 1)
	}
	// A dump with an empty state mask walks nothing but still needs the
	// kernel's TCP diag handler: a cheap probe. The TCPDIAG_GETSOCK dump
	// lists both families in one walk of the socket tables, where two
	// inet_diag_req_v2 dumps walk them twice (make bench shows the
	// difference on a big host). A kernel that refuses it gets the
	// per-family dumps.
	if !opts.perFamily {
		probe := request{Compat: true}
		if s.dump(context.Background(), &probe) == nil {
			s.reqs = append(s.reqs, request{Compat: true, Ext: ext, States: allStates})
			return nil
		}
	}
	probe := request{Family: familyINET, Protocol: protoTCP}
	if err := s.dump(context.Background(), &probe); err != nil {
		return err
	}
	s.reqs = append(s.reqs,
		request{Family: familyINET, Protocol: protoTCP, Ext: ext, States: allStates},
		request{Family: familyINET6, Protocol: protoTCP, Ext: ext, States: allStates})
	return nil
}

// Anomalies returns how many dumps of the last poll the kernel flagged
// NLM_F_DUMP_INTR (its socket table changed under the dump) and were done
// again.
func (s *Source) Anomalies() int { return s.interrupted }

// Name implements connections.Source.
func (s *Source) Name() string { return Name }

// Close implements connections.Source.
func (s *Source) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.close()
	s.conn = nil
	return err
}

// Sockets implements connections.Source: it dumps IPv4 and IPv6 sockets
// of each transport, redoing the dumps when the kernel flags one as
// interrupted. The Info of returned sockets points into storage the source
// reuses: it is valid until the next call.
func (s *Source) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	start := len(dst)
	s.interrupted = 0
	for attempt := 0; ; attempt++ {
		s.dec.reset(dst[:start])
		for i := range s.reqs {
			err := s.dump(ctx, &s.reqs[i])
			if s.reqs[i].Family == familyINET6 && errors.Is(err, unix.ENOENT) {
				// No IPv6 diag handler: IPv6 is not built in.
				err = nil
			}
			if err != nil {
				return s.dec.take(), err
			}
		}
		if !s.dec.intr {
			return s.dec.take(), nil
		}
		s.interrupted++
		if attempt+1 >= maxIntrRetries {
			return s.dec.take(), nil
		}
	}
}

// dump runs one request to its NLMSG_DONE. If it stops before the kernel
// ended the dump, the socket is closed, since an unfinished dump would make
// the next request fail with EBUSY; the next call opens a new one.
func (s *Source) dump(ctx context.Context, r *request) error {
	if s.conn == nil {
		c, err := dial()
		if err != nil {
			return err
		}
		s.conn = c
	}
	done, err := s.run(ctx, r)
	if !done {
		s.conn.close()
		s.conn = nil
	}
	return err
}

func (s *Source) run(ctx context.Context, r *request) (done bool, err error) {
	// inet_diag_msg does not say its protocol: the request does.
	s.dec.transport = r.transport()
	seq, err := s.conn.send(r, flagDump)
	if err != nil {
		return false, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		buf, err := s.conn.recv()
		if err != nil {
			return false, err
		}
		done, err := s.dec.feed(buf, seq)
		if err != nil {
			return done, fmt.Errorf("%s dump: %w", dumpName(r), err)
		}
		if done {
			return true, nil
		}
	}
}

func dumpName(r *request) string {
	switch {
	case r.Compat:
		return "TCP"
	case r.Protocol == protoUDP && r.Family == familyINET6:
		return "UDP IPv6"
	case r.Protocol == protoUDP:
		return "UDP IPv4"
	case r.Family == familyINET6:
		return "IPv6"
	}
	return "IPv4"
}
