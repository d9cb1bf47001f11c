package amqp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Bounds on what a broker can make the output hold. maxFrame is also the
// frame_max the output asks for, so a broker that honours the tuning never
// sends a bigger frame; a returned message (the output's own event) is far
// below maxBody.
const (
	maxFrame    = 128 << 10
	maxBody     = 16 << 20
	maxNesting  = 16
	frameMethod = 1
	frameHeader = 2
	frameBody   = 3
	frameBeat   = 8
	frameEnd    = 0xCE
)

var errBroker = errors.New("broker sent a frame the output refuses")

// frameGuard stands between amqp091 and the broker's connection. amqp091
// parses method arguments and content headers straight from the stream and
// allocates whatever length a field announces: 2 GiB for a long string in
// connection.start, a panic in its reader goroutine (which ends the
// process) for a byte array of negative length, 4 GiB for a body frame.
// The guard reads each frame whole, checks its size and, for the frames
// whose fields carry lengths (connection.start, connection.secure,
// channel.open-ok, content headers), that every length fits the frame,
// then lets amqp091 read it.
type frameGuard struct {
	net.Conn
	pending []byte
	header  [7]byte
}

func (g *frameGuard) Read(p []byte) (int, error) {
	if len(g.pending) == 0 {
		f, err := g.next()
		if err != nil {
			return 0, err
		}
		g.pending = f
	}
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// next reads and checks one frame.
func (g *frameGuard) next() ([]byte, error) {
	h := g.header[:]
	if _, err := io.ReadFull(g.Conn, h); err != nil {
		return nil, err
	}
	if string(h[:4]) == "AMQP" {
		return nil, fmt.Errorf("%w: the broker answered with protocol header %q: it does not speak AMQP 0-9-1", errBroker, h[:4])
	}
	typ, size := h[0], binary.BigEndian.Uint32(h[3:7])
	switch {
	case typ != frameMethod && typ != frameHeader && typ != frameBody && typ != frameBeat:
		return nil, fmt.Errorf("%w: frame type %d", errBroker, typ)
	case size > maxFrame:
		return nil, fmt.Errorf("%w: a frame of %d bytes, limit %d", errBroker, size, maxFrame)
	}
	f := make([]byte, 7+int(size)+1)
	copy(f, h)
	if _, err := io.ReadFull(g.Conn, f[7:]); err != nil {
		return nil, err
	}
	if f[len(f)-1] != frameEnd {
		return nil, fmt.Errorf("%w: frame end %#x", errBroker, f[len(f)-1])
	}
	payload := f[7 : len(f)-1]
	var err error
	switch typ {
	case frameMethod:
		err = checkMethod(payload)
	case frameHeader:
		err = checkHeader(payload)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBroker, err)
	}
	return f, nil
}

// field readers over a frame's payload; each checks its length first.
type fields struct {
	b   []byte
	err error
}

var errShort = errors.New("a field runs past its frame")

func (f *fields) take(n int) []byte {
	if f.err != nil {
		return nil
	}
	if n < 0 || n > len(f.b) {
		f.err = errShort
		return nil
	}
	v := f.b[:n]
	f.b = f.b[n:]
	return v
}

func (f *fields) u8() int {
	if v := f.take(1); v != nil {
		return int(v[0])
	}
	return 0
}

func (f *fields) u16() uint16 {
	if v := f.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (f *fields) u32() uint32 {
	if v := f.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (f *fields) shortstr() { f.take(f.u8()) }

func (f *fields) longstr() {
	n := f.u32()
	if n > 1<<31-1 {
		f.err = errShort
		return
	}
	f.take(int(n))
}

// table checks a field table as amqp091 reads it (its value types only).
func (f *fields) table(depth int) {
	n := f.u32()
	body := f.take(int(min(n, 1<<31-1)))
	if f.err != nil {
		return
	}
	if depth > maxNesting {
		f.err = errors.New("tables nested too deep")
		return
	}
	in := fields{b: body}
	for len(in.b) > 0 && in.err == nil {
		in.shortstr()
		in.value(depth)
	}
	if in.err != nil {
		f.err = in.err
	}
}

func (f *fields) value(depth int) {
	switch t := f.u8(); t {
	case 't', 'B', 'b':
		f.take(1)
	case 's':
		f.take(2)
	case 'I', 'f':
		f.take(4)
	case 'D':
		f.take(5)
	case 'l', 'd', 'T':
		f.take(8)
	case 'S':
		f.longstr()
	case 'x':
		n := int32(f.u32())
		if n < 0 {
			f.err = fmt.Errorf("a byte array of length %d", n)
			return
		}
		f.take(int(n))
	case 'A':
		n := f.u32()
		body := f.take(int(min(n, 1<<31-1)))
		in := fields{b: body, err: f.err}
		if depth > maxNesting {
			f.err = errors.New("arrays nested too deep")
			return
		}
		for len(in.b) > 0 && in.err == nil {
			in.value(depth + 1)
		}
		f.err = in.err
	case 'F':
		f.table(depth + 1)
	case 'V':
	default:
		if f.err == nil {
			f.err = fmt.Errorf("field type %q", rune(t))
		}
	}
}

// checkMethod checks the arguments that carry lengths, of the methods a
// broker sends that have such arguments.
func checkMethod(p []byte) error {
	f := fields{b: p}
	class, method := f.u16(), f.u16()
	switch {
	case class == 10 && method == 10: // connection.start
		f.take(2)
		f.table(0)
		f.longstr()
		f.longstr()
	case class == 10 && method == 20: // connection.secure
		f.longstr()
	case class == 20 && method == 11: // channel.open-ok
		f.longstr()
	}
	return f.err
}

// checkHeader checks a content header: its properties, and the size of
// the body that will follow.
func checkHeader(p []byte) error {
	f := fields{b: p}
	f.take(4) // class, weight
	size := f.take(8)
	flags := f.u16()
	if f.err != nil {
		return f.err
	}
	if n := binary.BigEndian.Uint64(size); n > maxBody {
		return fmt.Errorf("a message body of %d bytes, limit %d", n, maxBody)
	}
	for bit := uint16(0x8000); bit >= 0x0004 && f.err == nil; bit >>= 1 {
		if flags&bit == 0 {
			continue
		}
		switch bit {
		case 0x2000: // headers
			f.table(0)
		case 0x1000, 0x0800: // delivery mode, priority
			f.take(1)
		case 0x0040: // timestamp
			f.take(8)
		default: // short strings
			f.shortstr()
		}
	}
	return f.err
}
