package zeromq

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// message is one event as it goes on the wire: the topic frame, then the
// encoded event.
type message struct {
	topic   []byte
	payload []byte
}

func (m message) size() int { return len(m.topic) + len(m.payload) }

// writeBatch bounds how many messages one write(v) system call carries.
const writeBatch = 256

// peer is one connection of the output's socket: a subscriber (pub mode)
// or a consumer (push mode). Its reader runs in its own goroutine; in pub
// mode a writer goroutine sends what Publish queued for it.
type peer struct {
	conn    net.Conn
	name    string // remote address, for logs
	timeout time.Duration
	hwm     int

	wmu sync.Mutex // one writer at a time on conn

	mu      sync.Mutex
	subs    subscriptions
	queue   []message // pub: accepted for this subscriber, not yet written
	pending int       // len(queue) plus the messages being written
	closing bool      // the socket closes: write what is queued, then close
	closed  bool
	lost    int // accepted messages that were never written

	wake chan struct{} // cap 1: the writer has work
	done chan struct{} // closed with the connection
	once sync.Once
}

func newPeer(conn net.Conn, hwm int, timeout time.Duration) *peer {
	name := conn.RemoteAddr().String()
	if name == "" || name == "@" {
		name = "ipc peer"
	}
	return &peer{
		conn:    conn,
		name:    name,
		timeout: timeout,
		hwm:     hwm,
		subs:    newSubscriptions(),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// close ends the connection; it is safe to call more than once.
func (p *peer) close() {
	p.once.Do(func() {
		_ = p.conn.Close()
		p.mu.Lock()
		p.closed = true
		p.lost += len(p.queue)
		p.queue = nil
		p.mu.Unlock()
		close(p.done)
	})
}

func (p *peer) isClosed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// subscribed reports whether topic starts with a prefix the peer
// subscribed to (ZeroMQ's matching: the empty prefix matches all).
func (p *peer) subscribed(topic string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.subs.match(topic)
}

// subscribe counts subscriptions like libzmq: a prefix subscribed twice
// needs two unsubscriptions.
func (p *peer) subscribe(prefix string, on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		return p.subs.add(prefix)
	}
	p.subs.remove(prefix)
	return nil
}

// offer queues m for the writer; false when the peer already holds hwm
// unwritten messages or is closing. It never blocks.
func (p *peer) offer(m message) bool {
	p.mu.Lock()
	if p.closing || p.closed || p.pending >= p.hwm {
		p.mu.Unlock()
		return false
	}
	p.queue = append(p.queue, m)
	p.pending++
	p.mu.Unlock()
	p.signal()
	return true
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// finish makes the writer send what is queued and then close.
func (p *peer) finish() {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.signal()
}

// take removes up to writeBatch queued messages; last reports that the
// peer should close once they are written.
func (p *peer) take() (batch []message, last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := min(len(p.queue), writeBatch)
	batch = p.queue[:n:n]
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
	}
	return batch, p.closing && len(p.queue) == 0
}

func (p *peer) written(n int) {
	p.mu.Lock()
	p.pending -= n
	p.mu.Unlock()
}

// writeLoop sends the queued messages until the connection fails or the
// socket closes. report gets the bytes of each successful write, or the
// error and the number of accepted messages that will never be written.
func (p *peer) writeLoop(report func(bytes int, err error, lost int)) {
	for {
		select {
		case <-p.wake:
		case <-p.done:
			return
		}
		for {
			batch, last := p.take()
			if len(batch) > 0 {
				n, err := p.write(batch)
				if err != nil {
					p.close()
					p.mu.Lock()
					lost := p.lost + len(batch)
					p.mu.Unlock()
					report(n, err, lost)
					return
				}
				p.written(len(batch))
				report(n, nil, 0)
			}
			if last {
				p.close()
				return
			}
			if len(batch) == 0 {
				break
			}
		}
	}
}

// write sends msgs in one write(v) system call, bounded by the timeout: a
// peer that takes nothing for that long is cut off (after a partial
// write, the stream could not go on anyway).
func (p *peer) write(msgs []message) (int, error) {
	bufs := make(net.Buffers, 0, 4*len(msgs))
	hdrs := make([]byte, 0, 20*len(msgs))
	for _, m := range msgs {
		start := len(hdrs)
		hdrs = appendFrameHeader(hdrs, len(m.topic), true)
		mid := len(hdrs)
		hdrs = appendFrameHeader(hdrs, len(m.payload), false)
		bufs = append(bufs, hdrs[start:mid:mid], m.topic, hdrs[mid:len(hdrs):len(hdrs)], m.payload)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := p.conn.SetWriteDeadline(time.Now().Add(p.timeout)); err != nil {
		return 0, err
	}
	n, err := bufs.WriteTo(p.conn)
	return int(n), err
}

// readLoop reads what the peer sends until the connection ends: in pub
// mode subscriptions, which it applies; anything else is ignored. It
// closes the peer when the connection ends or the peer breaks the protocol.
func (p *peer) readLoop(onError func(error)) {
	defer p.close()
	r := bufio.NewReader(p.conn)
	inMessage := false // reading the further frames of a multi-frame message
	for {
		f, err := readFrame(r, maxPeerFrame)
		if err != nil {
			if !p.isClosed() {
				onError(err)
			}
			return
		}
		single := !inMessage && !f.more
		inMessage = f.more
		if f.command || !single {
			continue
		}
		if prefix, on, ok := subscription(f.body); ok {
			if err := p.subscribe(prefix, on); err != nil {
				onError(err)
				return
			}
		}
	}
}
