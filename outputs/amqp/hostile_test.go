package amqp

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/outputtest"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// AMQP 0-9-1 wire pieces for a hostile broker.
func amqpFrame(typ byte, channel uint16, payload []byte) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint16(b, channel)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(append(b, payload...), 0xCE)
}

func longstr(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

func table(fields ...[]byte) []byte {
	var body []byte
	for _, f := range fields {
		body = append(body, f...)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// connectionStart is connection.start with the given server properties
// and mechanisms (raw, as they go on the wire).
func connectionStart(props, mechanisms []byte) []byte {
	p := []byte{0, 10, 0, 10, 0, 9}
	p = append(p, props...)
	p = append(p, mechanisms...)
	p = append(p, longstr("en_US")...)
	return amqpFrame(1, 0, p)
}

// hostileBroker accepts connections and answers the protocol header with
// script's bytes (then stays silent until the client goes).
func hostileBroker(t *testing.T, script []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	outputtest.Serve(ln, func(c net.Conn) {
		hdr := make([]byte, 8)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		_, _ = c.Write(script)
		_, _ = io.Copy(io.Discard, c)
	})
	return ln.Addr().String()
}

// hostileBrokers are answers a broker (or whoever sits between it and the
// agent without TLS) can give: amqp091 allocates the sizes they announce,
// or panics on them, in its own reader goroutine, where a panic ends the
// process.
var hostileBrokers = map[string][]byte{
	"negative byte array in a table": connectionStart(table([]byte("\x07product"), []byte{'x', 0xff, 0xff, 0xff, 0xff}), longstr("PLAIN")),
	"2 GiB longstr":                  connectionStart(table(), binary.BigEndian.AppendUint32(nil, 0x7fffffff)),
	"2 GiB string in a table":        connectionStart(table([]byte("\x07product"), append([]byte{'S'}, binary.BigEndian.AppendUint32(nil, 0x7fffffff)...)), longstr("PLAIN")),
	"4 GiB frame":                    append([]byte{1, 0, 0}, 0xff, 0xff, 0xff, 0xf0, 0, 10, 0, 10),
	"table longer than its frame":    connectionStart(binary.BigEndian.AppendUint32(nil, 0x00ffffff), longstr("PLAIN")),
	"unknown frame type":             amqpFrame(9, 0, []byte("junk")),
	"bad frame end":                  append(amqpFrame(1, 0, []byte{0, 10, 0, 10, 0, 9})[:13], 0x00),
	"HTTP":                           []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
	"protocol mismatch":              []byte("AMQP\x00\x00\x09\x00"),
	"nothing (slow broker)":          nil,
}

// TestHostileBroker dials a broker that answers each hostile handshake:
// the dial fails within the timeout, the agent's heap does not take what
// the broker announced, and nothing is left running.
func TestHostileBroker(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("github.com/rabbitmq/amqp091-go.(*Connection).reader"))
	for name, script := range hostileBrokers {
		t.Run(name, func(t *testing.T) {
			addr := hostileBroker(t, script)
			cl, _, err := newTestClient(t, fmt.Sprintf("hosts: [\"amqp://%s/\"]\ntimeout: 2s\n", addr))
			require.NoError(t, err)
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err = cl.dialer.dial(t.Context(), cl.cfg.Hosts[0])
			require.Error(t, err)
			assert.Less(t, time.Since(start), 15*time.Second, "bounded by output.amqp.timeout")
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			assert.Less(t, int64(after.TotalAlloc-before.TotalAlloc), int64(64<<20), "allocated what the broker announced: %v", err)
			t.Logf("%v", err)
		})
	}
}

// FuzzBrokerHandshake feeds arbitrary broker bytes through frameGuard to
// amqp091's handshake: nothing the guard lets through makes amqp091 panic
// (in its reader goroutine, that would end the process).
func FuzzBrokerHandshake(f *testing.F) {
	for _, script := range hostileBrokers {
		f.Add(script)
	}
	f.Add(connectionStart(table([]byte("\x07product"), append([]byte{'S'}, longstr("RabbitMQ")...)), longstr("PLAIN AMQPLAIN")))
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &scriptedConn{in: in}
		c, err := amqp091.Open(&frameGuard{Conn: conn}, amqp091.Config{FrameSize: maxFrame, Locale: "en_US"})
		if err == nil {
			c.Close()
		}
	})
}

// scriptedConn is a net.Conn that reads in and discards what is written.
type scriptedConn struct {
	net.Conn // nil: only the methods below are called
	in       []byte
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}
func (c *scriptedConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptedConn) Close() error                     { return nil }
func (c *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }
func (c *scriptedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// TestConnectCloseCycles: libbeat reconnects an output with Close and
// Connect, after a publish or in the middle of a confirm wait; nothing
// the sessions started is left running once the output is closed.
func TestConnectCloseCycles(t *testing.T) {
	b := broker(t)
	newConsumer(t, "connbeat", "cycles", nil, "#") // the test's own connection stays
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cl, _, err := newTestClient(t, fmt.Sprintf("hosts: [%q]\nusername: %s\npassword: %s\n", b.URL(), testUser, testPass))
	require.NoError(t, err)
	for i := 0; i < 5; i++ {
		require.NoError(t, cl.Connect(t.Context()))
		if i%2 == 0 {
			_, err := publish(t, cl, event(i, "listener", "listening"))
			require.NoError(t, err)
		}
		require.NoError(t, cl.Close())
	}
}
