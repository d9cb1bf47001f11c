package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// chunkSize is the size of the blocks datagrams are queued in between the
// reading and the processing goroutine.
const chunkSize = 256 << 10

// overrunMark is the record length that marks, in the queue, where the
// kernel reported a receive buffer overrun.
const overrunMark = 0

// chunk holds datagrams read from the socket, each as a native-endian
// uint32 length and its bytes (a zero length marks an overrun).
type chunk struct {
	b []byte
	// drained says the socket was empty when the chunk was handed over:
	// every event the kernel queued before then is in it or before it.
	drained bool
	// seq numbers the hand-overs.
	seq uint64
}

// reader moves datagrams from the socket into chunks as fast as it can,
// so that the kernel's buffer, which costs about three times an event's
// size per event, only takes bursts shorter than a chunk's hand-over, and
// what takes time (decoding, the process join, libbeat) does not make the
// kernel drop events. At most maxChunks are queued; when they are, the
// reader waits and the kernel's buffer fills again.
type reader struct {
	sock  *socket
	full  chan *chunk // to the processing goroutine, in order
	free  chan *chunk // back from it, for reuse
	alloc int         // chunks allocated: at most cap(full)+2
	cur   *chunk
	// handed counts hand-overs; the processing side reads it to tell
	// chunks handed over after a moment of its own.
	handed atomic.Uint64
	err    error // why the reader stopped, once full is closed
}

func newReader(s *socket, queueBytes int) *reader {
	n := max(1, queueBytes/chunkSize)
	return &reader{sock: s, full: make(chan *chunk, n), free: make(chan *chunk, n+2)}
}

// offerEvery is how often the reader offers a chunk again that the
// processing side had no room for, while the socket stays empty.
const offerEvery = 5 * time.Millisecond

// run reads until ctx ends or the socket fails, then closes r.full.
//
// When the socket is empty the chunk at hand is offered to the processing
// side at once, so that events are not held back while it waits; when it
// is still busy with earlier chunks the reader goes on filling the same
// chunk, so that the queue's room goes to events rather than to chunks
// holding a few each.
func (r *reader) run(ctx context.Context) {
	defer close(r.full)
	stop := context.AfterFunc(ctx, func() { _ = r.sock.f.SetReadDeadline(time.Now()) })
	defer stop()
	for ctx.Err() == nil {
		buf, err := r.sock.recv(false, time.Time{})
		if errors.Is(err, unix.EAGAIN) {
			// Empty: all the kernel queued so far is in hand.
			r.offer()
			wait := housekeepEvery
			if r.cur != nil && len(r.cur.b) > 0 {
				wait = offerEvery
			}
			buf, err = r.sock.recv(true, time.Now().Add(wait))
			if errors.Is(err, errTimeout) {
				// Still empty. An empty chunk lets the processing side
				// look at its timers.
				r.offer()
				continue
			}
		}
		switch {
		case errors.Is(err, unix.ENOBUFS):
			r.append(nil)
		case err != nil:
			if ctx.Err() == nil {
				r.err = err
			}
			r.handOver(ctx, false)
			return
		default:
			r.append(buf)
		}
	}
	r.handOver(ctx, false)
}

// offer hands the chunk at hand (an empty one if none), marked drained, to
// the processing side if it has room; else the reader keeps filling it.
// Call it only when the socket was just found empty.
func (r *reader) offer() {
	if r.cur == nil {
		r.cur = r.get(0)
	}
	r.cur.drained = true
	r.cur.seq = r.handed.Load() + 1
	select {
	case r.full <- r.cur:
		r.handed.Add(1)
		r.cur = nil
	default:
		r.cur.drained = false
	}
}

// append queues one datagram (nil: an overrun mark), handing the chunk
// over first when it has no room.
func (r *reader) append(buf []byte) {
	if r.cur != nil && len(r.cur.b)+4+len(buf) > cap(r.cur.b) {
		r.handOver(context.Background(), false)
	}
	if r.cur == nil {
		r.cur = r.get(len(buf) + 4)
	}
	r.cur.b = binary.NativeEndian.AppendUint32(r.cur.b, uint32(len(buf)))
	r.cur.b = append(r.cur.b, buf...)
}

// handOver sends the current chunk (possibly empty) to the processing
// side. It waits while the queue is full; it reports false when ctx ended
// meanwhile.
func (r *reader) handOver(ctx context.Context, drained bool) bool {
	c := r.cur
	if c == nil {
		c = r.get(0)
	}
	r.cur = nil
	c.drained = drained
	c.seq = r.handed.Load() + 1
	select {
	case r.full <- c:
		r.handed.Add(1)
		return true
	case <-ctx.Done():
		return false
	}
}

// get returns an empty chunk with room for n bytes: a recycled one, a new
// one while fewer than the bound exist, else the next one processed.
func (r *reader) get(n int) *chunk {
	size := max(chunkSize, n)
	select {
	case c := <-r.free:
		if cap(c.b) >= size {
			c.b = c.b[:0]
			return c
		}
	default:
		if r.alloc < cap(r.full)+2 {
			r.alloc++
			return &chunk{b: make([]byte, 0, size)}
		}
		c := <-r.free
		if cap(c.b) >= size {
			c.b = c.b[:0]
			return c
		}
	}
	return &chunk{b: make([]byte, 0, size)}
}

// recycle gives a processed chunk back to the reader.
func (r *reader) recycle(c *chunk) {
	select {
	case r.free <- c:
	default:
	}
}

// records calls fn for each datagram of c, with nil for an overrun mark.
func (c *chunk) records(fn func(buf []byte)) {
	b := c.b
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint32(b))
		b = b[4:]
		if n == overrunMark {
			fn(nil)
			continue
		}
		fn(b[:n])
		b = b[n:]
	}
}
