package tests

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fault is what faultProxy does to the server's answers.
type fault int

const (
	passThrough fault = iota
	// slow holds each chunk of the server's answer for the proxy's delay.
	slow
	// flaky resets every other connection, the first one included, once
	// the server has started answering on it.
	flaky
	// halfWrite forwards half of the first chunk of the server's answer on
	// each connection, then nothing more (the connection stays open until
	// the client gives up).
	halfWrite
)

// faultProxy is a TCP proxy in front of a server that injects a fault
// into the server's answers; what the client sends always reaches the
// server whole. The fault can change while connections are open.
type faultProxy struct {
	t        *testing.T
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	fault fault
	delay time.Duration
	conns int
	open  map[net.Conn]bool
}

func startFaultProxy(t *testing.T, upstream string, f fault, delay time.Duration) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &faultProxy{t: t, ln: ln, upstream: upstream, fault: f, delay: delay, open: map[net.Conn]bool{}}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

func (p *faultProxy) set(f fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
}

func (p *faultProxy) current() (fault, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault, p.delay
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.open {
		c.Close()
	}
}

func (p *faultProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns++
		n := p.conns
		p.open[client], p.open[server] = true, true
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(server, client)
			server.(*net.TCPConn).CloseWrite()
		}()
		go p.answer(n, client, server)
	}
}

// answer copies the server's answer to the client, injecting the fault.
func (p *faultProxy) answer(n int, client, server net.Conn) {
	defer func() {
		client.Close()
		server.Close()
		p.mu.Lock()
		delete(p.open, client)
		delete(p.open, server)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	first := true
	for {
		k, err := server.Read(buf)
		if k > 0 {
			f, delay := p.current()
			switch {
			case f == slow:
				time.Sleep(delay)
			case f == flaky && n%2 == 1:
				client.(*net.TCPConn).SetLinger(0) // RST
				return
			case f == halfWrite && first:
				_, _ = client.Write(buf[:max(1, k/2)])
				_, _ = io.Copy(io.Discard, server) // swallow the rest
				return
			}
			first = false
			if _, werr := client.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			client.(*net.TCPConn).CloseWrite()
			return
		}
	}
}
