// Package testpki issues throwaway certificates for TLS tests: a CA, server
// certificates for 127.0.0.1, and client certificates with an email address
// a server can map to a user, all as PEM files in a test's directory.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// PKI is a CA and the files of what it signed.
type PKI struct {
	t *testing.T
	// Dir holds the PEM files.
	Dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	next int64
}

// New makes a CA valid for an hour around now.
func New(t *testing.T) *PKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ampy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &PKI{t: t, Dir: t.TempDir(), ca: ca, key: key, next: 2}
	p.write("ca.pem", "CERTIFICATE", der)
	return p
}

// CAFile is the CA's certificate.
func (p *PKI) CAFile() string { return filepath.Join(p.Dir, "ca.pem") }

func (p *PKI) write(name, kind string, der []byte) string {
	path := filepath.Join(p.Dir, name)
	require.NoError(p.t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
	return path
}

// Server issues a server certificate for 127.0.0.1.
func (p *PKI) Server(name string) (certFile, keyFile string) {
	return p.issue(name, func(c *x509.Certificate) {
		c.IPAddresses, c.ExtKeyUsage = []net.IP{net.ParseIP("127.0.0.1")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
}

// Client issues a client certificate carrying email.
func (p *PKI) Client(name, email string) (certFile, keyFile string) {
	return p.issue(name, func(c *x509.Certificate) {
		c.EmailAddresses, c.ExtKeyUsage = []string{email}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

func (p *PKI) issue(name string, set func(*x509.Certificate)) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(p.t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.next), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	p.next++
	set(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	require.NoError(p.t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(p.t, err)
	return p.write(name+".pem", "CERTIFICATE", der), p.write(name+"-key.pem", "EC PRIVATE KEY", kder)
}

// ServerTLS is a server configuration from a certificate Server issued,
// requiring client certificates signed by the CA when mutual.
func (p *PKI) ServerTLS(certFile, keyFile string, mutual bool) *tls.Config {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(p.t, err)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if mutual {
		pool := x509.NewCertPool()
		pool.AddCert(p.ca)
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg
}
