package zeromq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
)

// Reconnect waits in connect mode, like libzmq's reconnect_ivl and
// reconnect_ivl_max.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// linger bounds how long Close waits for queued messages to be written.
const linger = time.Second

// socket is the output's ZeroMQ socket: it binds (accepting any number of
// peers) or connects (reconnecting after a loss), performs the ZMTP
// handshake with zmq4 and keeps the set of live peers.
type socket struct {
	ep      endpoint
	bind    bool
	typ     zmq4.SocketType
	hwm     int
	timeout time.Duration
	// maxPeers bounds the connections served at once, handshakes included.
	maxPeers int
	log      *logp.Logger
	// wrote is told what each pub-mode writer sent (see peer.writeLoop).
	wrote func(p *peer, bytes int, err error, lost int)

	ctx    context.Context
	cancel context.CancelFunc
	ln     net.Listener
	wg     sync.WaitGroup

	mu          sync.Mutex
	peers       []*peer
	next        int           // push: round robin position
	changed     chan struct{} // closed and replaced when a peer joins
	serving     int           // accepted connections not yet closed
	refused     int           // connections refused since the last warning
	lastRefusal time.Time
}

func newSocket(ep endpoint, bind bool, typ zmq4.SocketType, hwm int, timeout time.Duration, maxPeers int, log *logp.Logger) *socket {
	return &socket{ep: ep, bind: bind, typ: typ, hwm: hwm, timeout: timeout, maxPeers: maxPeers, log: log, changed: make(chan struct{})}
}

// open binds, or starts connecting in the background as libzmq does (a
// connect succeeds before the peer is there).
func (s *socket) open() error {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.bind {
		ln, err := listen(s.ep)
		if err != nil {
			s.cancel()
			return err
		}
		s.ln = ln
		s.wg.Add(1)
		go s.acceptLoop()
		return nil
	}
	s.wg.Add(1)
	go s.dialLoop()
	return nil
}

// listen binds ep. An ipc socket file left by a process that is gone is
// replaced, as libzmq does; one that a live process accepts on is not.
func listen(ep endpoint) (net.Listener, error) {
	ln, err := net.Listen(ep.network, ep.address)
	if err == nil || ep.network != "unix" || ep.address[0] == '@' || !errors.Is(err, syscall.EADDRINUSE) {
		if err != nil {
			return nil, fmt.Errorf("binding %s: %w", ep, err)
		}
		return ln, nil
	}
	if fi, serr := os.Lstat(ep.address); serr != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("binding %s: %w (and it is not a socket file to replace)", ep, err)
	}
	if c, derr := net.DialTimeout("unix", ep.address, time.Second); derr == nil {
		c.Close()
		return nil, fmt.Errorf("binding %s: another process listens on it: %w", ep, err)
	}
	if rerr := os.Remove(ep.address); rerr != nil {
		return nil, fmt.Errorf("binding %s: removing the stale socket file: %w", ep, rerr)
	}
	ln, err = net.Listen(ep.network, ep.address)
	if err != nil {
		return nil, fmt.Errorf("binding %s: %w", ep, err)
	}
	return ln, nil
}

func (s *socket) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warnf("accepting on %s: %v", s.ep, err)
			if !sleepCtx(s.ctx, reconnectMin) {
				return
			}
			continue
		}
		if !s.admit() {
			conn.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.release()
			p, err := s.handshake(conn, true)
			if err != nil {
				s.log.Warnf("ZMTP handshake with %s on %s failed: %v", conn.RemoteAddr(), s.ep, err)
				return
			}
			s.serve(p)
		}()
	}
}

// admit takes a slot for a new connection, or refuses it when max_peers
// are served already; refusals are logged at most every warnEvery.
func (s *socket) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving < s.maxPeers {
		s.serving++
		return true
	}
	s.refused++
	if time.Since(s.lastRefusal) >= warnEvery {
		s.log.Warnf("%s: %d connections refused: %d peers connected already (output.zeromq.max_peers)", s.ep, s.refused, s.maxPeers)
		s.lastRefusal, s.refused = time.Now(), 0
	}
	return false
}

func (s *socket) release() {
	s.mu.Lock()
	s.serving--
	s.mu.Unlock()
}

// dialLoop keeps one connection to the endpoint, reconnecting with
// backoff after each loss. The first failure in a row is a warning, the
// rest are debug messages.
func (s *socket) dialLoop() {
	defer s.wg.Done()
	wait := reconnectMin
	failures := 0
	d := net.Dialer{Timeout: s.timeout}
	for s.ctx.Err() == nil {
		conn, err := d.DialContext(s.ctx, s.ep.network, s.ep.address)
		if err == nil {
			var p *peer
			if p, err = s.handshake(conn, false); err == nil {
				wait, failures = reconnectMin, 0
				s.serve(p)
				if !sleepCtx(s.ctx, wait) {
					return
				}
				continue
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		if failures++; failures == 1 {
			s.log.Warnf("connecting to %s: %v; retrying every %s .. %s", s.ep, err, reconnectMin, reconnectMax)
		} else {
			s.log.Debugf("connecting to %s: %v; retrying in %s", s.ep, err, wait)
		}
		if !sleepCtx(s.ctx, wait) {
			return
		}
		wait = min(2*wait, reconnectMax)
	}
}

// handshake runs ZMTP's greeting and NULL security handshake, which
// checks that the peer's socket type fits ours (SUB or XSUB for PUB, PULL
// for PUSH).
func (s *socket) handshake(conn net.Conn, server bool) (*peer, error) {
	if err := conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
		conn.Close()
		return nil, err
	}
	stop := context.AfterFunc(s.ctx, func() { conn.Close() })
	defer stop()
	if _, err := openZMTP(conn, s.typ, server); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, err
	}
	return newPeer(conn, s.hwm, s.timeout), nil
}

// serve adds p to the live peers and runs it until its connection ends.
func (s *socket) serve(p *peer) {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		p.close()
		return
	}
	s.peers = append(s.peers, p)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.log.Infof("%s: %s %s connected", s.ep, s.peerRole(), p.name)

	var wg sync.WaitGroup
	if s.typ == zmq4.Pub {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.writeLoop(func(n int, err error, lost int) { s.wrote(p, n, err, lost) })
		}()
	}
	p.readLoop(func(err error) {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			return
		}
		s.log.Warnf("%s: peer %s: %v; disconnecting it", s.ep, p.name, err)
	})
	wg.Wait()

	s.mu.Lock()
	for i, q := range s.peers {
		if q == p {
			s.peers = append(s.peers[:i:i], s.peers[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	s.log.Infof("%s: %s %s disconnected", s.ep, s.peerRole(), p.name)
}

// openZMTP runs zmq4's handshake on conn through a handshakeGuard. The
// guard refuses what would make zmq4 allocate without bound or index out
// of range; the recover is the last line should zmq4 fail on input the
// guard let through: it costs that one connection, never the agent.
func openZMTP(conn net.Conn, typ zmq4.SocketType, server bool) (zc *zmq4.Conn, err error) {
	defer func() {
		if r := recover(); r != nil {
			zc, err = nil, fmt.Errorf("%w: zmq4 failed on the peer's handshake: %v", errHandshake, r)
		}
	}()
	return zmq4.Open(newHandshakeGuard(conn), null.Security(), typ, nil, server, nil)
}

func (s *socket) peerRole() string {
	if s.typ == zmq4.Pub {
		return "subscriber"
	}
	return "PULL peer"
}

// live returns the connected peers.
func (s *socket) live() []*peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*peer(nil), s.peers...)
}

// nextPeer returns the next connected peer in round robin, waiting up to
// the timeout for one to connect; nil when none did.
func (s *socket) nextPeer() *peer {
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		for range s.peers {
			p := s.peers[s.next%len(s.peers)]
			s.next++
			if !p.isClosed() {
				s.mu.Unlock()
				return p
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-t.C:
			return nil
		case <-s.ctx.Done():
			return nil
		}
	}
}

// close stops accepting and connecting, gives the writers up to linger to
// send what they hold, and closes every connection.
func (s *socket) close() error {
	s.cancel()
	var err error
	if s.ln != nil {
		err = s.ln.Close() // also removes an ipc socket file
	}
	peers := s.live()
	for _, p := range peers {
		if s.typ == zmq4.Pub {
			p.finish()
		} else {
			p.close() // push writes synchronously: nothing is queued
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), linger)
	defer cancel()
	for _, p := range peers {
		select {
		case <-p.done:
		case <-ctx.Done():
		}
		p.close()
	}
	s.wg.Wait()
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
