package netlink

import (
	"encoding/binary"
	"fmt"

	"github.com/connbeat/connbeat/model"
	"golang.org/x/sys/unix"
)

// decoder turns the recv buffers of sock_diag dumps into sockets. It owns
// the tcp_info storage the sockets point into and reuses it between dumps.
type decoder struct {
	sockets  []model.Socket
	infos    infoSlab
	wantInfo bool
	// transport is that of the dump being decoded: inet_diag_msg does not
	// carry it.
	transport model.Transport
	// intr is set when a message carried NLM_F_DUMP_INTR: the kernel's
	// socket table changed during the dump, which may have missed sockets.
	intr bool
}

// reset starts a new set of dumps appending to dst.
func (d *decoder) reset(dst []model.Socket) {
	d.sockets = dst
	d.infos.reset()
	d.intr = false
}

// take returns the sockets decoded since reset and lets go of them: they
// are the caller's, who may drop them between two dumps.
func (d *decoder) take() []model.Socket {
	out := d.sockets
	d.sockets = nil
	return out
}

// feed decodes the netlink messages of one recv buffer that answer the
// request numbered seq (others are left over from an abandoned dump and are
// skipped). It reports done at the NLMSG_DONE that ends the dump. It checks
// every length before reading, so arbitrary bytes give an error, never a
// panic.
func (d *decoder) feed(buf []byte, seq uint32) (done bool, err error) {
	return eachAnswer(buf, seq, func(h header, body []byte) (bool, error) {
		if h.Flags&flagDumpIntr != 0 {
			d.intr = true
		}
		switch h.Type {
		case msgTypeDone:
			// The payload, when present, is the dump's return value.
			if len(body) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(body)); code < 0 {
					return true, fmt.Errorf("dump ended with error: %w", unix.Errno(-code))
				}
			}
			return true, nil
		case msgTypeError:
			errno, err := nlmsgerr(body)
			if err != nil {
				return false, err
			}
			if errno != 0 {
				return true, fmt.Errorf("kernel refused the dump: %w", errno)
			}
			// A zero code is an acknowledgement; dumps do not ask for one.
		case msgTypeDiag, msgTypeTCPDiag:
			if err := d.add(body); err != nil {
				return false, err
			}
		}
		return false, nil
	})
}

// eachAnswer calls fn for each message of buf that answers the request
// numbered seq (others are left over from an abandoned request), until fn
// says stop or fails, and returns what fn returned last.
func eachAnswer(buf []byte, seq uint32, fn func(h header, body []byte) (stop bool, err error)) (bool, error) {
	for len(buf) > 0 {
		h, body, rest, err := nextMessage(buf)
		if err != nil {
			return false, err
		}
		buf = rest
		if h.Seq != seq {
			continue
		}
		if stop, err := fn(h, body); stop || err != nil {
			return stop, err
		}
	}
	return false, nil
}

// nlmsgerr reads the error code of an NLMSG_ERROR payload: 0 for an
// acknowledgement.
func nlmsgerr(body []byte) (unix.Errno, error) {
	if len(body) < 4 {
		return 0, fmt.Errorf("nlmsgerr: %d of 4 bytes: %w", len(body), errTruncated)
	}
	if code := int32(binary.NativeEndian.Uint32(body)); code < 0 {
		return unix.Errno(-code), nil
	}
	return 0, nil
}

// nextMessage splits the first netlink message off buf, checking its
// length first.
func nextMessage(buf []byte) (h header, body, rest []byte, err error) {
	if err := h.unmarshal(buf); err != nil {
		return h, nil, nil, err
	}
	if h.Len < headerLen || int(h.Len) > len(buf) {
		return h, nil, nil, fmt.Errorf("nlmsghdr length %d with %d bytes left: %w", h.Len, len(buf), errTruncated)
	}
	body = buf[headerLen:h.Len]
	if a := align4(int(h.Len)); a < len(buf) {
		rest = buf[a:]
	}
	return h, body, rest, nil
}

// add decodes one inet_diag_msg and its attributes.
func (d *decoder) add(body []byte) error {
	var m message
	if err := m.unmarshal(body); err != nil {
		return err
	}
	s, ok := m.socket()
	s.Transport = d.transport
	if !ok || !s.Transport.HasState(s.State) {
		// Not a socket of a family and state the dump could hold: skip it
		// rather than report a made-up address or state.
		return nil
	}
	if d.wantInfo && s.Transport == model.TCP && s.State != model.StateListen {
		// messageLen is a multiple of 4: the attributes follow directly.
		payload, found, err := findAttr(body[messageLen:], attrInfo)
		if err != nil {
			return fmt.Errorf("attributes of socket %s:%d: %w", s.LocalIP, s.LocalPort, err)
		}
		if found {
			info := d.infos.next()
			if err := decodeTCPInfo(payload, info); err != nil {
				d.infos.unget()
				return fmt.Errorf("socket %s:%d: %w", s.LocalIP, s.LocalPort, err)
			}
			s.Info = info
		}
	}
	d.sockets = append(d.sockets, s)
	return nil
}

// infoChunk is how many tcp_info records one allocation holds. Chunks are
// never moved, so pointers handed out stay valid until reset.
const infoChunk = 1024

// infoSlab hands out TCPInfo records from chunks reused between dumps, so a
// poll with tcp_info on allocates nothing per socket once warm.
type infoSlab struct {
	chunks [][]model.TCPInfo
	n      int
}

func (s *infoSlab) reset() {
	// Keep up to twice what the last dump used: a one-off spike is given
	// back, a steady load allocates nothing.
	if used := (s.n + infoChunk - 1) / infoChunk; len(s.chunks) > 2*used+1 {
		clear(s.chunks[2*used+1:])
		s.chunks = s.chunks[:2*used+1]
	}
	s.n = 0
}

func (s *infoSlab) next() *model.TCPInfo {
	c, i := s.n/infoChunk, s.n%infoChunk
	if c == len(s.chunks) {
		s.chunks = append(s.chunks, make([]model.TCPInfo, infoChunk))
	}
	s.n++
	return &s.chunks[c][i]
}

func (s *infoSlab) unget() { s.n-- }
