package rabbit

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/certs"
)

// TestBrokerSurvivesRestart starts a real broker with credentials and a
// TLS listener, leaves a persistent message in a durable queue, stops it
// (the port closes) and starts it again on the same port and data: the
// message is still there. The TLS listener accepts the client certificate.
func TestBrokerSurvivesRestart(t *testing.T) {
	Require(t)
	dir := t.TempDir()
	pki, err := certs.Write(dir)
	require.NoError(t, err)
	b, err := Start(dir, Options{User: "cb", Password: "s3cret", TLS: TLSFor(pki)})
	require.NoError(t, err)
	t.Cleanup(b.Close)

	conn, err := amqp.Dial(b.UserURL())
	require.NoError(t, err, b.Output())
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare("kept", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Publish("", "kept", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("hello")}))
	require.NoError(t, conn.Close())

	_, err = amqp.Dial(b.URL())
	require.Error(t, err, "guest is not a user of this broker")

	require.NoError(t, b.Stop())
	_, err = net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", itoa(b.Port)), time.Second)
	require.Error(t, err, "port closed after Stop")

	require.NoError(t, b.Restart())
	conn, err = amqp.Dial(b.UserURL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err = conn.Channel()
	require.NoError(t, err)
	var msg amqp.Delivery
	require.Eventually(t, func() bool {
		var ok bool
		msg, ok, err = ch.Get("kept", true)
		return err == nil && ok
	}, 30*time.Second, 100*time.Millisecond, "the persistent message survived the restart")
	assert.Equal(t, "hello", string(msg.Body))

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(pki.CA)
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(ca))
	cert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	require.NoError(t, err)
	tc, err := amqp.DialTLS("amqps://cb:s3cret@"+net.JoinHostPort("localhost", itoa(b.TLSPort))+"/", &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
	require.NoError(t, err)
	assert.True(t, tc.ConnectionState().HandshakeComplete)
	tc.Close()
}

func itoa(n int) string { return strconv.Itoa(n) }
