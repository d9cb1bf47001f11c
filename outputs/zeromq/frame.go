package zeromq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ZMTP 3.0 frame flags (RFC 23). zmq4 performs the greeting and the NULL
// handshake; after it, the output writes and reads frames itself: it
// batches a subscriber's messages into one write and bounds what a peer can
// make it allocate (zmq4's reader allocates any size a peer announces).
const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
	flagsKnown  = flagMore | flagLong | flagCommand
)

// maxPeerFrame bounds a frame read from a peer. Peers of PUB and PUSH
// send only subscriptions (a topic prefix) and nothing else.
const maxPeerFrame = 64 << 10

var errFrameTooLong = errors.New("frame longer than the limit")

// appendFrameHeader appends the header of a message frame of n bytes;
// more marks a frame that another frame of the same message follows.
func appendFrameHeader(dst []byte, n int, more bool) []byte {
	var flags byte
	if more {
		flags |= flagMore
	}
	if n <= 255 {
		return append(dst, flags, byte(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, flags|flagLong), uint64(n))
}

// frame is one frame read from a peer.
type frame struct {
	more    bool
	command bool
	body    []byte
}

// readFrame reads one frame from r. A body longer than limit is an error,
// before anything is allocated for it.
func readFrame(r io.Reader, limit int) (frame, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return frame{}, err
	}
	flags := hdr[0]
	if flags&^flagsKnown != 0 {
		return frame{}, fmt.Errorf("frame flags %#x have reserved bits set", flags)
	}
	size := uint64(hdr[1])
	if flags&flagLong != 0 {
		if _, err := io.ReadFull(r, hdr[2:9]); err != nil {
			return frame{}, noEOF(err)
		}
		size = binary.BigEndian.Uint64(hdr[1:9])
	}
	if size > uint64(limit) {
		return frame{}, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLong, size, limit)
	}
	f := frame{more: flags&flagMore != 0, command: flags&flagCommand != 0, body: make([]byte, size)}
	if _, err := io.ReadFull(r, f.body); err != nil {
		return frame{}, noEOF(err)
	}
	return f, nil
}

// noEOF turns an end of stream inside a frame into ErrUnexpectedEOF: only
// an end between frames is a clean close.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// subscription decodes a subscription message (a single frame: 1 or 0,
// then the topic prefix).
func subscription(body []byte) (prefix string, subscribe, ok bool) {
	if len(body) == 0 || body[0] > 1 {
		return "", false, false
	}
	return string(body[1:]), body[0] == 1, true
}
