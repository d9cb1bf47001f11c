package zeromq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/go-zeromq/zmq4"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// The ZMTP 3.x greeting (RFC 23): a signature, the version, the security
// mechanism's name and the as-server flag, 64 bytes in all.
const (
	greetingLen   = 64
	sigHeader     = 0xff
	sigFooter     = 0x7f
	versionOffset = 10
	mechOffset    = 12
	mechLen       = 20
	serverOffset  = 32
)

// maxHandshakeFrame bounds the READY command a peer may send: its metadata
// (Socket-Type, Identity of at most 255 bytes, application properties).
const maxHandshakeFrame = maxPeerFrame

var errHandshake = errors.New("ZMTP handshake refused")

// handshakeGuard stands between zmq4 and a peer's connection during the
// handshake. zmq4 allocates whatever frame size a peer announces (2^63
// bytes panics in makeslice; a few GiB is simply taken) and indexes READY
// metadata without bounds checks, before the output's own frame reader
// takes over. The guard reads the greeting and the one command the NULL
// mechanism exchanges itself, checks them (sizes first, before allocating
// anything), and only then lets zmq4 read those bytes. Anything further
// zmq4 would read is refused: after the handshake the output reads the
// connection itself.
type handshakeGuard struct {
	net.Conn
	pending []byte // checked bytes zmq4 has not read yet
	step    int    // 0: greeting next, 1: READY next, 2: done
}

func newHandshakeGuard(c net.Conn) *handshakeGuard { return &handshakeGuard{Conn: c} }

func (g *handshakeGuard) Read(p []byte) (int, error) {
	if len(g.pending) == 0 {
		var err error
		switch g.step {
		case 0:
			g.pending, err = readGreeting(g.Conn)
		case 1:
			g.pending, err = readReady(g.Conn)
		default:
			err = fmt.Errorf("%w: the peer's handshake is over, nothing more is read through it", errHandshake)
		}
		if err != nil {
			return 0, err
		}
		g.step++
	}
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// readGreeting reads and checks a ZMTP 3.x greeting for the NULL mechanism.
func readGreeting(r io.Reader) ([]byte, error) {
	g := make([]byte, greetingLen)
	if _, err := io.ReadFull(r, g); err != nil {
		return nil, fmt.Errorf("reading the greeting: %w", err)
	}
	if err := checkGreeting(g); err != nil {
		return nil, err
	}
	return g, nil
}

func checkGreeting(g []byte) error {
	switch {
	case g[0] != sigHeader || g[9] != sigFooter:
		return fmt.Errorf("%w: not a ZMTP signature (%x)", errHandshake, g[:10])
	case g[versionOffset] < 3:
		return fmt.Errorf("%w: ZMTP %d.%d is not supported (3.0 or later)", errHandshake, g[versionOffset], g[versionOffset+1])
	case !bytes.Equal(g[mechOffset:mechOffset+mechLen], nullMechanism[:]):
		return fmt.Errorf("%w: security mechanism %q is not NULL", errHandshake, bytes.TrimRight(g[mechOffset:mechOffset+mechLen], "\x00"))
	case g[serverOffset] > 1:
		return fmt.Errorf("%w: as-server flag %d is not 0 or 1", errHandshake, g[serverOffset])
	}
	return nil
}

var nullMechanism = [mechLen]byte{'N', 'U', 'L', 'L'}

// readReady reads one command frame, which must be a well-formed READY,
// and returns it as it came on the wire.
func readReady(r io.Reader) ([]byte, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return nil, fmt.Errorf("reading the READY command: %w", err)
	}
	flags, n := hdr[0], 2
	if flags&^flagsKnown != 0 || flags&flagCommand == 0 || flags&flagMore != 0 {
		return nil, fmt.Errorf("%w: expected a single command frame, got flags %#x", errHandshake, flags)
	}
	size := uint64(hdr[1])
	if flags&flagLong != 0 {
		if _, err := io.ReadFull(r, hdr[2:9]); err != nil {
			return nil, fmt.Errorf("reading the READY command: %w", noEOF(err))
		}
		size, n = binary.BigEndian.Uint64(hdr[1:9]), 9
	}
	if size > maxHandshakeFrame {
		return nil, fmt.Errorf("%w: a %d-byte command, limit %d", errHandshake, size, maxHandshakeFrame)
	}
	buf := make([]byte, n+int(size))
	copy(buf, hdr[:n])
	if _, err := io.ReadFull(r, buf[n:]); err != nil {
		return nil, fmt.Errorf("reading the READY command: %w", noEOF(err))
	}
	if err := checkReady(buf[n:]); err != nil {
		return nil, err
	}
	return buf, nil
}

// checkReady checks a command body: the name READY, metadata whose every
// property fits the body (RFC 23: name length, name, value length, value),
// and a Socket-Type zmq4 knows (it panics on any other).
func checkReady(body []byte) error {
	if len(body) == 0 || int(body[0]) > len(body)-1 {
		return fmt.Errorf("%w: malformed command", errHandshake)
	}
	name := string(body[1 : 1+int(body[0])])
	if name != "READY" {
		if name == "ERROR" && len(body) > 6 {
			return fmt.Errorf("%w: the peer sent ERROR %q", errHandshake, body[7:min(len(body), 7+int(body[6]))])
		}
		return fmt.Errorf("%w: expected READY, got command %q", errHandshake, name)
	}
	md := body[1+len(name):]
	peerType := ""
	for len(md) > 0 {
		klen := int(md[0])
		if klen == 0 || 1+klen+4 > len(md) {
			return fmt.Errorf("%w: malformed READY metadata", errHandshake)
		}
		vlen := binary.BigEndian.Uint32(md[1+klen:])
		if uint64(vlen) > uint64(len(md)-1-klen-4) {
			return fmt.Errorf("%w: malformed READY metadata", errHandshake)
		}
		// zmq4 looks the property up under its title-cased name, the
		// last one of that name winning.
		if titleCase(string(md[1:1+klen])) == "Socket-Type" {
			peerType = string(md[1+klen+4 : 1+klen+4+int(vlen)])
		}
		md = md[1+klen+4+int(vlen):]
	}
	if !slices.Contains(socketTypes, zmq4.SocketType(peerType)) {
		return fmt.Errorf("%w: unknown socket type %q", errHandshake, peerType)
	}
	return nil
}

// socketTypes are the types zmq4 can check for compatibility.
var socketTypes = []zmq4.SocketType{
	zmq4.Pair, zmq4.Pub, zmq4.Sub, zmq4.Req, zmq4.Rep, zmq4.Dealer,
	zmq4.Router, zmq4.Pull, zmq4.Push, zmq4.XPub, zmq4.XSub,
}

// titleCase is zmq4's normalisation of metadata names.
func titleCase(s string) string { return cases.Title(language.Und, cases.NoLower).String(s) }
