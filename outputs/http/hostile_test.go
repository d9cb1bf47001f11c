package http

import (
	"bufio"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/outputtest"
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// hostileEndpoint accepts connections, reads each request and answers
// with answer(conn, done); done closes when the test ends.
func hostileEndpoint(t *testing.T, answer func(net.Conn, <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	outputtest.Serve(ln, func(c net.Conn) {
		go func() { <-done; c.Close() }()
		req, err := nethttp.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		answer(c, done)
	})
	return "http://" + ln.Addr().String() + "/in"
}

// endless writes s forever (until the client goes).
func endless(c net.Conn, head string, chunk []byte) {
	if _, err := io.WriteString(c, head); err != nil {
		return
	}
	for {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// TestHostileEndpoint: endpoints that answer with an endless body, endless
// headers, a trickle, garbage, or nothing. Each Publish returns within the
// request timeout, keeps (or, for a 200, ACKs) the batch, and the output
// holds a bounded part of what was sent; closed, it leaves no goroutine.
func TestHostileEndpoint(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	junk := []byte(strings.Repeat("x", 64<<10))
	for _, tc := range []struct {
		name   string
		answer func(net.Conn, <-chan struct{})
		want   outest.BatchSignalTag
	}{
		{"200 with an endless body", func(c net.Conn, _ <-chan struct{}) { endless(c, "HTTP/1.1 200 OK\r\n\r\n", junk) }, outest.BatchACK},
		{"500 with an endless body", func(c net.Conn, _ <-chan struct{}) { endless(c, "HTTP/1.1 500 Oops\r\n\r\n", junk) }, outest.BatchRetry},
		{"endless headers", func(c net.Conn, _ <-chan struct{}) {
			endless(c, "HTTP/1.1 200 OK\r\n", []byte("X-Junk: "+string(junk[:1000])+"\r\n"))
		}, outest.BatchRetry},
		{"a byte a second", func(c net.Conn, done <-chan struct{}) {
			for _, b := range []byte("HTTP/1.1 200 OK\r\n\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				select {
				case <-time.After(time.Second):
				case <-done:
					return
				}
			}
		}, outest.BatchRetry},
		{"garbage", func(c net.Conn, _ <-chan struct{}) { _, _ = c.Write([]byte("\x00\x01garbage\r\n\r\n")) }, outest.BatchRetry},
		{"no answer, closed", func(net.Conn, <-chan struct{}) {}, outest.BatchRetry},
		{"1xx without end", func(c net.Conn, _ <-chan struct{}) { endless(c, "", []byte("HTTP/1.1 100 Continue\r\n\r\n")) }, outest.BatchRetry},
		{"redirect loop", func(c net.Conn, _ <-chan struct{}) {
			_, _ = io.WriteString(c, "HTTP/1.1 307 Again\r\nLocation: /in\r\nContent-Length: 0\r\n\r\n")
		}, outest.BatchRetry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := hostileEndpoint(t, tc.answer)
			c, _ := newTestClient(t, url, "hosts: [x]\ntimeout: 2s")
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			b := outest.NewBatch(events(1, 2, 3)...)
			_ = c.Publish(t.Context(), b)
			require.Len(t, b.Signals, 1)
			assert.Equal(t, tc.want, b.Signals[0].Tag)
			assert.Less(t, time.Since(start), 10*time.Second, "bounded by output.http.timeout")
			runtime.ReadMemStats(&after)
			assert.Less(t, int64(after.TotalAlloc-before.TotalAlloc), int64(64<<20), "bounded allocations")
			require.NoError(t, c.Close())
		})
	}
}

// TestConnectCloseCycles: libbeat reconnects an output with Close and
// Connect; connections kept alive between requests go with it.
func TestConnectCloseCycles(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rc := &receiver{t: t}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c, _ := newTestClient(t, srv.URL+"/in", "hosts: [x]")
	for i := 0; i < 5; i++ {
		require.NoError(t, c.Connect(t.Context()))
		assert.Equal(t, []outest.BatchSignalTag{outest.BatchACK}, publishUntilDone(t, c, events(i)))
		require.NoError(t, c.Close())
	}
}
