package zeromq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// greeting is a valid ZMTP 3.0 NULL greeting (as-server 0).
func greeting() []byte {
	g := make([]byte, greetingLen)
	g[0], g[9], g[versionOffset] = sigHeader, sigFooter, 3
	copy(g[mechOffset:], "NULL")
	return g
}

// command is a command frame with the given body.
func command(body []byte) []byte {
	return append(appendFrameHeader(nil, len(body), false), body...)
}

func commandFrame(body []byte) []byte {
	f := command(body)
	f[0] |= flagCommand
	return f
}

// ready is a READY command body with the given metadata properties.
func ready(props ...string) []byte {
	b := append([]byte{5}, "READY"...)
	for i := 0; i+1 < len(props); i += 2 {
		b = append(b, byte(len(props[i])))
		b = append(b, props[i]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(props[i+1])))
		b = append(b, props[i+1]...)
	}
	return b
}

// hostileHandshakes are what a peer can send instead of a well-formed
// handshake; each must cost the output that one connection and nothing
// else. The first one made the agent exit before the guard (makeslice:
// len out of range).
var hostileHandshakes = map[string][]byte{
	"2^63-byte frame":           append(greeting(), 0x06, 0x80, 0, 0, 0, 0, 0, 0, 0),
	"2^40-byte frame":           append(greeting(), 0x06, 0, 0, 1, 0, 0, 0, 0, 0),
	"1 MiB frame":               append(greeting(), 0x06, 0, 0, 0, 0, 0, 0x10, 0, 0),
	"frame with more":           append(greeting(), 0x05, 1, 0),
	"message, not command":      append(greeting(), command(ready("Socket-Type", "SUB"))...),
	"key past the end":          append(greeting(), commandFrame([]byte{5, 'R', 'E', 'A', 'D', 'Y', 3, 'a', 'b'})...),
	"no room for value length":  append(greeting(), commandFrame([]byte{5, 'R', 'E', 'A', 'D', 'Y', 1, 'a', 0})...),
	"value past the end":        append(greeting(), commandFrame(append(ready(), 1, 'a', 0xff, 0xff, 0xff, 0xff, 'v'))...),
	"command name past the end": append(greeting(), commandFrame([]byte{200, 'R'})...),
	"empty command":             append(greeting(), commandFrame(nil)...),
	"ERROR":                     append(greeting(), commandFrame(append([]byte{5, 'E', 'R', 'R', 'O', 'R', 3}, "bad"...))...),
	"PLAIN mechanism":           func() []byte { g := greeting(); copy(g[mechOffset:], "PLAIN"); return g }(),
	"ZMTP 2.0":                  func() []byte { g := greeting(); g[versionOffset] = 2; return g }(),
	"HTTP":                      []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + string(make([]byte, 64))),
	"wrong socket type":         append(greeting(), commandFrame(ready("Socket-Type", "PUB"))...),
}

// TestHostileHandshakes drives a bound pub output with raw TCP clients
// sending each hostile handshake: the output closes that connection, and
// a real subscriber that comes afterwards still gets its events.
func TestHostileHandshakes(t *testing.T) {
	c, m := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "send_timeout: 2s"))
	addr := c.socket().ln.Addr().String()
	for name, in := range hostileHandshakes {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()
			_, err = conn.Write(in)
			require.NoError(t, err)
			// The output sends its greeting, perhaps its READY, then
			// closes: the read ends with EOF or a reset, not a timeout.
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
			_, err = io.Copy(io.Discard, conn)
			var ne net.Error
			assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the output kept the connection open")
		})
	}
	assert.Empty(t, c.socket().live(), "no hostile peer became a subscriber")

	s := zmq4.NewSub(t.Context())
	defer s.Close()
	require.NoError(t, s.Dial(c.boundEndpoint()))
	require.NoError(t, s.SetOption(zmq4.OptionSubscribe, ""))
	waitSubscribed(t, c, "", 1)
	publish(t, c, event(1, "connection", "web-1"))
	assert.Equal(t, []int{1}, idsOf(recvN(t, s, 1)))
	assert.Equal(t, int64(1), m.get("events.acked"))
}

// TestGuardPassesValidHandshakes: zmq4 completes the handshake through
// the guard with libzmq-style metadata, including an identity of 255
// bytes and application properties.
func TestGuardPassesValidHandshakes(t *testing.T) {
	for name, props := range map[string][]string{
		"socket type only": {"Socket-Type", "SUB"},
		"identity":         {"Socket-Type", "SUB", "Identity", string(bytes.Repeat([]byte{'i'}, 255))},
		"app metadata":     {"Socket-Type", "XSUB", "X-Hello", "world", "Identity", ""},
	} {
		t.Run(name, func(t *testing.T) {
			conn := &scriptedConn{in: bytes.NewReader(append(greeting(), commandFrame(ready(props...))...))}
			zc, err := openZMTP(conn, zmq4.Pub, true)
			require.NoError(t, err)
			assert.Equal(t, props[1], zc.Peer.Meta["Socket-Type"])
		})
	}
}

// FuzzHandshake feeds arbitrary bytes through the guard to zmq4's
// handshake without openZMTP's recover: zmq4 must never panic on what the
// guard lets through.
func FuzzHandshake(f *testing.F) {
	for _, in := range hostileHandshakes {
		f.Add(in)
	}
	f.Add(append(greeting(), commandFrame(ready("Socket-Type", "SUB"))...))
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &scriptedConn{in: bytes.NewReader(in)}
		_, _ = zmq4.Open(newHandshakeGuard(conn), null.Security(), zmq4.Pub, nil, true, nil)
		assert.LessOrEqual(t, conn.read, greetingLen+9+maxHandshakeFrame, "the guard reads one greeting and one command")
	})
}

// scriptedConn is a net.Conn that reads from in and discards what is
// written.
type scriptedConn struct {
	net.Conn // nil: only Read, Write and Close are called
	in       *bytes.Reader
	read     int
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	n, err := c.in.Read(p)
	c.read += n
	return n, err
}
func (c *scriptedConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *scriptedConn) Close() error                { return nil }
