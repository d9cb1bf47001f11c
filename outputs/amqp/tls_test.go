package amqp

import (
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
	for _, srv := range m.Servers() {
		ts, err := srv.Start(nil)
		require.NoError(t, err)
		t.Cleanup(ts.Close)
		for _, mode := range certs.VerificationModes {
			t.Run(srv.Name+"/"+mode, func(t *testing.T) {
				cl, _, err := newTestClient(t, fmt.Sprintf("hosts: [\"amqps://%s/\"]\ntimeout: 10s\nssl.certificate_authorities: [%q]\nssl.verification_mode: %s\n",
					ts.Addr(), m.CA, mode))
				require.NoError(t, err)
				before := len(ts.Handshakes())
				_, err = cl.dialer.dial(t.Context(), cl.cfg.Hosts[0])
				require.Error(t, err, "the test server speaks no AMQP")
				require.Eventually(t, func() bool { return len(ts.Handshakes()) > before }, 10*time.Second, 5*time.Millisecond,
					"the server saw the handshake")
				hs := ts.Handshakes()
				if slices.Contains(srv.RefusedBy, mode) {
					assert.Error(t, hs[before], "the client must refuse the handshake; dial said %v", err)
				} else {
					assert.NoError(t, hs[before], "the client must accept the handshake; dial said %v", err)
				}
			})
		}
	}
}
