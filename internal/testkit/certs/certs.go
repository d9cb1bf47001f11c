// Package certs writes the PEM files of TLS tests: a CA, a server
// certificate it signed for localhost and 127.0.0.1, a client certificate
// it signed, and a client certificate of an unrelated CA.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files are the PEM files for a TLS test: a CA that signed the server's
// certificate (for localhost and 127.0.0.1) and a client certificate, and
// a second, unrelated CA that signed a client certificate the server must
// refuse.
type Files struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	RogueCA, RogueCert, RogueKey                     string
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Write generates the certificates into dir.
func Write(dir string) (Files, error) {
	c := Files{
		CA: filepath.Join(dir, "ca.pem"), ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
		RogueCA: filepath.Join(dir, "rogue-ca.pem"), RogueCert: filepath.Join(dir, "rogue.pem"), RogueKey: filepath.Join(dir, "rogue-key.pem"),
	}
	ca, err := newCA("connbeat test CA", c.CA)
	if err != nil {
		return c, err
	}
	rogue, err := newCA("some other CA", c.RogueCA)
	if err != nil {
		return c, err
	}
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	client := func() *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: "connbeat"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
	for _, leaf := range []struct {
		tmpl      *x509.Certificate
		by        issuer
		cert, key string
	}{
		{server, ca, c.ServerCert, c.ServerKey},
		{client(), ca, c.ClientCert, c.ClientKey},
		{client(), rogue, c.RogueCert, c.RogueKey},
	} {
		if err := leaf.by.sign(leaf.tmpl, leaf.cert, leaf.key); err != nil {
			return c, err
		}
	}
	return c, nil
}

func newCA(name, certFile string) (issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issuer{}, fmt.Errorf("generating a key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return issuer{}, fmt.Errorf("creating CA %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return issuer{}, err
	}
	return issuer{cert: cert, key: key}, writePEM(certFile, "CERTIFICATE", der)
}

func (is issuer) sign(tmpl *x509.Certificate, certFile, keyFile string) error {
	return is.signValid(tmpl, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), certFile, keyFile)
}

func (is issuer) signValid(tmpl *x509.Certificate, notBefore, notAfter time.Time, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.cert, &key.PublicKey, is.key)
	if err != nil {
		return fmt.Errorf("signing %s: %w", tmpl.Subject.CommonName, err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(keyFile, "PRIVATE KEY", pk)
}

func writePEM(file, typ string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}
