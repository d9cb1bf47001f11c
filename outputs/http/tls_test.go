package http

import (
	"bufio"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"slices"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/certs"
)

// answer200 answers every request on conn with 200.
func answer200(conn net.Conn) {
	r := bufio.NewReader(conn)
	for {
		req, err := nethttp.ReadRequest(r)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		if _, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil {
			return
		}
	}
}

// TestTLSMatrix posts to https:// endpoints whose certificate is good,
// for another host name, of another CA or expired, and to one that speaks
// only TLS 1.0 and 1.1, with each ssl.verification_mode: the batch is
// delivered exactly when the mode must accept the certificate, and
// otherwise goes back to the queue.
func TestTLSMatrix(t *testing.T) {
	m, err := certs.WriteMatrix(t.TempDir())
	require.NoError(t, err)
	for _, srv := range m.Servers() {
		ts, err := srv.Start(answer200)
		require.NoError(t, err)
		t.Cleanup(ts.Close)
		for _, mode := range certs.VerificationModes {
			t.Run(srv.Name+"/"+mode, func(t *testing.T) {
				url := fmt.Sprintf("https://%s/in", ts.Addr())
				c, obs := newTestClient(t, url, fmt.Sprintf("hosts: [x]\ntimeout: 10s\nssl.certificate_authorities: [%q]\nssl.verification_mode: %s\n", m.CA, mode))
				b := outest.NewBatch(events(1)...)
				err := c.Publish(t.Context(), b)
				require.Len(t, b.Signals, 1)
				if slices.Contains(srv.RefusedBy, mode) {
					assert.Error(t, err)
					assert.Equal(t, outest.BatchRetry, b.Signals[0].Tag, "kept for a retry: %v", err)
					assert.Zero(t, obs.Acked)
				} else {
					assert.NoError(t, err)
					assert.Equal(t, outest.BatchACK, b.Signals[0].Tag)
				}
				require.Eventually(t, func() bool { return len(ts.Handshakes()) > 0 }, 10*time.Second, 5*time.Millisecond)
			})
		}
	}
}
