package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/transport/tlscommon"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// closeGrace bounds the polite connection.close at Close; after it the
// socket is closed regardless, so shutdown never waits on a dead broker.
const closeGrace = time.Second

// session is one AMQP connection with one channel in confirm mode.
type session struct {
	host string // redacted URL, for logs
	conn *amqp091.Connection
	ch   *amqp091.Channel

	mu       sync.Mutex
	raw      net.Conn // the socket under conn, closed as a last resort
	tlsState tls.ConnectionState
	once     sync.Once
	done     chan struct{} // closed by close(): ends waits on confirms
	lost     chan *amqp091.Error
	// returns carries the messages the broker returned as unroutable
	// (published with mandatory). RabbitMQ sends the return before the
	// confirm, and amqp091 hands both over from one goroutine, so a
	// message's return is in this channel by the time its confirm is done.
	// It holds a batch's worth: amqp091 blocks while it is full.
	returns chan amqp091.Return
}

// dialer opens sessions with the output's settings.
type dialer struct {
	cfg *amqpConfig
	tls *tlscommon.TLSConfig // nil: Go's defaults for amqps://
	log *logp.Logger
}

// tlsConfig is the TLS client configuration for host. libbeat's
// verification (verification_mode full, the default) checks the
// certificate against the host name it was built with: it must be built
// per host, or the host name check is skipped and any certificate of a
// trusted CA passes.
func (d *dialer) tlsConfig(host string) *tls.Config {
	if d.tls == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	return d.tls.BuildModuleClientConfig(host, tlscommon.WithLogger(d.log))
}

// dial connects to host, opens a channel, turns on publisher confirms and
// declares (or checks) the exchange.
func (d *dialer) dial(ctx context.Context, host string) (*session, error) {
	u, err := parseHost(host)
	if err != nil {
		return nil, err
	}
	s := &session{host: u.Redacted(), done: make(chan struct{})}
	var tlsCfg *tls.Config
	if u.Scheme == "amqps" {
		tlsCfg = d.tlsConfig(u.Hostname())
	}
	cfg := amqp091.Config{
		Heartbeat: d.cfg.Heartbeat,
		// The broker's frames never exceed it: frameGuard refuses bigger.
		FrameSize: maxFrame,
		Locale:    "en_US",
		Vhost:     d.cfg.VHost,
		Properties: amqp091.Table{
			"product":         "connbeat",
			"connection_name": "connbeat",
		},
		Dial: func(network, addr string) (net.Conn, error) {
			nd := net.Dialer{Timeout: d.cfg.Timeout}
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the TLS and AMQP handshakes; amqp091 clears it once
			// the connection is open and heartbeats take over.
			if err := c.SetDeadline(time.Now().Add(d.cfg.Timeout)); err != nil {
				c.Close()
				return nil, err
			}
			rc := &recordingConn{Conn: c}
			s.mu.Lock()
			s.raw = rc
			s.mu.Unlock()
			if tlsCfg == nil {
				return &frameGuard{Conn: rc}, nil
			}
			// The TLS handshake is done here rather than by amqp091 so that
			// the server's refusal of the client certificate, which TLS 1.3
			// delivers after the client's handshake, is kept for the error.
			tc := tls.Client(rc, tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			s.mu.Lock()
			s.tlsState = tc.ConnectionState()
			s.raw = tc
			s.mu.Unlock()
			return &frameGuard{Conn: &recordingConn{Conn: tc}}, nil
		},
	}
	if d.cfg.Username != "" {
		cfg.SASL = []amqp091.Authentication{&amqp091.PlainAuth{Username: d.cfg.Username, Password: d.cfg.Password}}
	}
	// amqp091 would wrap the connection in TLS again for amqps://; the
	// Dial above already did, so it is given amqp:// with the port made
	// explicit.
	plain := *u
	if u.Scheme == "amqps" {
		plain.Scheme = "amqp"
		if u.Port() == "" {
			plain.Host = net.JoinHostPort(u.Hostname(), "5671")
		}
	}
	conn, err := amqp091.DialConfig(plain.String(), cfg)
	if err != nil {
		cause := s.ioError()
		s.closeRaw()
		if cause != nil {
			if strings.Contains(cause.Error(), "remote error: tls:") {
				return nil, fmt.Errorf("connecting to %s: the broker refused the TLS client: %w (it needs a client certificate signed by a CA it trusts: check output.amqp.ssl.certificate and ssl.key)", s.host, cause)
			}
			return nil, fmt.Errorf("connecting to %s: %w (%v)", s.host, cause, explain(err))
		}
		return nil, fmt.Errorf("connecting to %s: %w", s.host, explain(err))
	}
	s.conn = conn
	s.lost = conn.NotifyClose(make(chan *amqp091.Error, 1))
	if s.ch, err = conn.Channel(); err != nil {
		s.close()
		return nil, fmt.Errorf("opening a channel on %s: %w", s.host, err)
	}
	s.returns = s.ch.NotifyReturn(make(chan amqp091.Return, d.cfg.BulkMaxSize+1))
	if err := s.ch.Confirm(false); err != nil {
		s.close()
		return nil, fmt.Errorf("turning on publisher confirms on %s: %w", s.host, err)
	}
	if err := d.exchange(s.ch); err != nil {
		s.close()
		return nil, fmt.Errorf("%s: %w", s.host, err)
	}
	return s, nil
}

// exchange declares the exchange, or checks that it exists when the
// output must not declare it.
func (d *dialer) exchange(ch *amqp091.Channel) error {
	c := d.cfg
	if c.Exchange == "" {
		return nil // the default exchange always exists
	}
	if c.ExchangeDeclare {
		if err := ch.ExchangeDeclare(c.Exchange, c.ExchangeType, c.ExchangeDurable, false, false, false, nil); err != nil {
			return fmt.Errorf("declaring exchange %q (type %s, durable %t): %w", c.Exchange, c.ExchangeType, c.ExchangeDurable, err)
		}
		return nil
	}
	if err := ch.ExchangeDeclarePassive(c.Exchange, c.ExchangeType, c.ExchangeDurable, false, false, false, nil); err != nil {
		var ae *amqp091.Error
		if errors.As(err, &ae) && ae.Code == amqp091.NotFound {
			return fmt.Errorf("exchange %q does not exist (declare it, or set output.amqp.exchange_declare: true): %w", c.Exchange, err)
		}
		return fmt.Errorf("checking exchange %q: %w", c.Exchange, err)
	}
	return nil
}

// broken reports whether the connection or the channel has closed.
func (s *session) broken() bool {
	select {
	case <-s.done:
		return true
	default:
	}
	return s.conn.IsClosed() || s.ch.IsClosed()
}

// close ends the session within closeGrace even when the broker does not
// answer, and wakes whoever waits on confirms.
func (s *session) close() {
	s.once.Do(func() {
		close(s.done)
		if s.conn != nil {
			_ = s.conn.CloseDeadline(time.Now().Add(closeGrace))
		}
		s.closeRaw()
	})
}

func (s *session) closeRaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw != nil {
		_ = s.raw.Close()
	}
}

// explain adds what an operator needs to the errors amqp091 words tersely.
func explain(err error) error {
	var ae *amqp091.Error
	if errors.As(err, &ae) && ae.Code == amqp091.AccessRefused {
		return fmt.Errorf("%w (check output.amqp.username/password and the user's permissions on the vhost)", err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New("bad URL")
	}
	return err
}

// ioError returns the first I/O error on the connection, which says more
// than the AMQP error it turns into (a TLS alert, a reset).
func (s *session) ioError() error {
	s.mu.Lock()
	raw := s.raw
	s.mu.Unlock()
	var rc *recordingConn
	switch c := raw.(type) {
	case *recordingConn:
		rc = c
	case *tls.Conn:
		rc, _ = c.NetConn().(*recordingConn)
		if err := tlsAlert(c); err != nil {
			return err
		}
	}
	if rc == nil {
		return nil
	}
	return rc.firstErr()
}

// tlsAlert reads what the server sent after the handshake: a TLS 1.3
// server that refuses the client's certificate says so with an alert the
// client only sees on its next read.
func tlsAlert(c *tls.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(closeGrace))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// recordingConn keeps the first read or write error.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	err error
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.record(err)
	return n, err
}

func (r *recordingConn) Write(p []byte) (int, error) {
	n, err := r.Conn.Write(p)
	r.record(err)
	return n, err
}

func (r *recordingConn) record(err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

func (r *recordingConn) firstErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
