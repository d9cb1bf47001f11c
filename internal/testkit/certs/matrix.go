package certs

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/outputtest"
)

// ServerCase is one server certificate of a TLS matrix: the PEM files a
// test server presents, and which verification modes must refuse it.
type ServerCase struct {
	Name      string
	Cert, Key string
	// RefusedBy lists the verification_mode values that must fail the
	// handshake (none accepts anything).
	RefusedBy []string
}

// Matrix is a CA clients trust and server certificates that are wrong in
// one way each.
type Matrix struct {
	CA    string
	Cases []ServerCase
}

// WriteMatrix writes a CA and four server certificates for localhost and
// 127.0.0.1 into dir: a good one, one for another host name, one of
// another CA, and one that expired.
func WriteMatrix(dir string) (Matrix, error) {
	m := Matrix{CA: filepath.Join(dir, "matrix-ca.pem")}
	ca, err := newCA("connbeat matrix CA", m.CA)
	if err != nil {
		return m, err
	}
	other, err := newCA("another CA", filepath.Join(dir, "matrix-other-ca.pem"))
	if err != nil {
		return m, err
	}
	server := func(names ...string) *x509.Certificate {
		c := &x509.Certificate{
			Subject:     pkix.Name{CommonName: names[0]},
			DNSNames:    names,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		if names[0] == "localhost" {
			c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		return c
	}
	now := time.Now()
	for _, c := range []struct {
		name      string
		tmpl      *x509.Certificate
		by        issuer
		from, to  time.Time
		refusedBy []string
	}{
		{"good", server("localhost"), ca, now.Add(-time.Hour), now.Add(24 * time.Hour), nil},
		{"wrong hostname", server("wronghost"), ca, now.Add(-time.Hour), now.Add(24 * time.Hour), []string{"full", "strict"}},
		{"wrong CA", server("localhost"), other, now.Add(-time.Hour), now.Add(24 * time.Hour), []string{"full", "strict", "certificate"}},
		{"expired", server("localhost"), ca, now.Add(-48 * time.Hour), now.Add(-24 * time.Hour), []string{"full", "strict", "certificate"}},
	} {
		file := strings.ReplaceAll(c.name, " ", "-")
		sc := ServerCase{
			Name: c.name, RefusedBy: c.refusedBy,
			Cert: filepath.Join(dir, "matrix-"+file+".pem"), Key: filepath.Join(dir, "matrix-"+file+"-key.pem"),
		}
		if err := c.by.signValid(c.tmpl, c.from, c.to, sc.Cert, sc.Key); err != nil {
			return m, err
		}
		m.Cases = append(m.Cases, sc)
	}
	return m, nil
}

// MatrixServer is a test server's certificate case and TLS versions.
type MatrixServer struct {
	ServerCase
	MinVersion, MaxVersion uint16
}

// Servers are the matrix's servers: each certificate case with TLS 1.2 and
// 1.3, and the good certificate on a server that speaks only TLS 1.0 and
// 1.1, which every mode refuses (libbeat's default is TLS 1.2 .. 1.3).
func (m Matrix) Servers() []MatrixServer {
	var out []MatrixServer
	for _, c := range m.Cases {
		out = append(out, MatrixServer{c, tls.VersionTLS12, tls.VersionTLS13})
	}
	old := m.Cases[0]
	old.Name, old.RefusedBy = "TLS 1.0/1.1 only", VerificationModes
	return append(out, MatrixServer{old, tls.VersionTLS10, tls.VersionTLS11})
}

// Start starts the server.
func (s MatrixServer) Start(serve func(net.Conn)) (*TLSServer, error) {
	return StartTLSServer(s.Cert, s.Key, s.MinVersion, s.MaxVersion, serve)
}

// VerificationModes are libbeat's ssl.verification_mode values.
var VerificationModes = []string{"full", "strict", "certificate", "none"}

// TLSServer accepts TLS connections on 127.0.0.1 with one certificate and
// records the result of each handshake.
type TLSServer struct {
	ln      net.Listener
	mu      sync.Mutex
	results []error
}

// StartTLSServer serves cert with TLS versions minVersion..maxVersion;
// serve (nil: close at once) gets each connection whose handshake
// completed.
func StartTLSServer(cert, key string, minVersion, maxVersion uint16, serve func(net.Conn)) (*TLSServer, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   minVersion,
		MaxVersion:   maxVersion,
	})
	if err != nil {
		return nil, err
	}
	s := &TLSServer{ln: ln}
	outputtest.Serve(ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		err := c.(*tls.Conn).Handshake()
		s.mu.Lock()
		s.results = append(s.results, err)
		s.mu.Unlock()
		if err == nil && serve != nil {
			serve(c)
		}
	})
	return s, nil
}

// Addr is the server's host:port.
func (s *TLSServer) Addr() string { return s.ln.Addr().String() }

// Handshakes returns the result of each handshake so far.
func (s *TLSServer) Handshakes() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.results...)
}

// Close stops accepting.
func (s *TLSServer) Close() { s.ln.Close() }
