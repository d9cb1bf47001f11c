package amqp

import (
	"crypto/tls"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/certs"
)

// TestTLSMatrix dials amqps:// servers whose certificate is good, for
// another host name, of another CA or expired, and a server that speaks
// only TLS 1.0 and 1.1, with each ssl.verification_mode: the handshake
// completes exactly when the mode must accept the certificate. The
// wrong-hostname case passed every mode before the TLS configuration was
// built per host.
func TestTLSMatrix(t *testing.T) {
	m, err := certs.WriteMatrix(t.TempDir())
	require.NoError(t, err)
	type server struct {
		name     string
		cert     certs.ServerCase
		min, max uint16
	}
	var servers []server
	for _, c := range m.Cases {
		servers = append(servers, server{c.Name, c, tls.VersionTLS12, tls.VersionTLS13})
	}
	old := m.Cases[0]
	old.RefusedBy = certs.VerificationModes // libbeat's default is TLS 1.2 .. 1.3
	servers = append(servers, server{"TLS 1.0/1.1 only", old, tls.VersionTLS10, tls.VersionTLS11})

	for _, srv := range servers {
		ts, err := certs.StartTLSServer(srv.cert.Cert, srv.cert.Key, srv.min, srv.max, nil)
		require.NoError(t, err)
		t.Cleanup(ts.Close)
		for _, mode := range certs.VerificationModes {
			t.Run(srv.name+"/"+mode, func(t *testing.T) {
				cl, _, err := newTestClient(t, fmt.Sprintf("hosts: [\"amqps://%s/\"]\ntimeout: 10s\nssl.certificate_authorities: [%q]\nssl.verification_mode: %s\n",
					ts.Addr(), m.CA, mode))
				require.NoError(t, err)
				before := len(ts.Handshakes())
				_, err = cl.dialer.dial(t.Context(), cl.cfg.Hosts[0])
				require.Error(t, err, "the test server speaks no AMQP")
				require.Eventually(t, func() bool { return len(ts.Handshakes()) > before }, 10*time.Second, 5*time.Millisecond,
					"the server saw the handshake")
				hs := ts.Handshakes()
				if slices.Contains(srv.cert.RefusedBy, mode) {
					assert.Error(t, hs[before], "the client must refuse the handshake; dial said %v", err)
				} else {
					assert.NoError(t, hs[before], "the client must accept the handshake; dial said %v", err)
				}
			})
		}
	}
}
