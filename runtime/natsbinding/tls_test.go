package natsbinding_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/certfiles"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

// pki is a CA and what it signs, written as PEM files.
type pki struct {
	t    *testing.T
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	next int64
}

func newPKI(t *testing.T) *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ampy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &pki{t: t, dir: t.TempDir(), ca: ca, key: key, next: 2}
	p.write("ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(name, kind string, der []byte) string {
	path := filepath.Join(p.dir, name)
	require.NoError(p.t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
	return path
}

// issue signs a certificate: a server's for 127.0.0.1, or a client's with
// an email address the server maps to a user.
func (p *pki) issue(name, email string, server bool) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(p.t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.next), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	p.next++
	if server {
		tmpl.IPAddresses, tmpl.ExtKeyUsage = []net.IP{net.ParseIP("127.0.0.1")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.EmailAddresses, tmpl.ExtKeyUsage = []string{email}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	require.NoError(p.t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(p.t, err)
	return p.write(name+".pem", "CERTIFICATE", der), p.write(name+"-key.pem", "EC PRIVATE KEY", kder)
}

// users lists the NATS users of the server's connections.
func users(t *testing.T, srv *server.Server) []string {
	cz, err := srv.Connz(&server.ConnzOptions{Username: true})
	require.NoError(t, err)
	var out []string
	for _, c := range cz.Conns {
		out = append(out, c.AuthorizedUser)
	}
	return out
}

// With mTLS the server maps a client certificate to a user. The client's
// certificate rotated on disk is presented by its next connection without
// a restart, while the open one keeps its identity; without a certificate,
// or without the CA, the connection fails saying what to fix.
func TestMutualTLSAndCertificateRotation(t *testing.T) {
	p := newPKI(t)
	srvCert, srvKey := p.issue("server", "", true)
	conf := filepath.Join(p.dir, "server.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`
tls {
  cert_file: "`+srvCert+`"
  key_file: "`+srvKey+`"
  ca_file: "`+filepath.Join(p.dir, "ca.pem")+`"
  verify_and_map: true
}
authorization {
  users = [
    {user: "svc-a@ampy", permissions: {publish: ">", subscribe: ">"}}
    {user: "svc-b@ampy", permissions: {publish: ">", subscribe: ">"}}
  ]
}
`), 0o600))
	srv, err := embedded.StartNATS(embedded.NATSOptions{ConfigFile: conf})
	require.NoError(t, err)
	defer srv.Shutdown()
	u, err := url.Parse(srv.URL())
	require.NoError(t, err)
	tlsURL := "tls://" + u.Host

	// The client's files, rewritten in place to rotate.
	aCert, aKey := p.issue("svc-a", "svc-a@ampy", false)
	bCert, bKey := p.issue("svc-b", "svc-b@ampy", false)
	certFile, keyFile := filepath.Join(p.dir, "client.pem"), filepath.Join(p.dir, "client-key.pem")
	place := func(cert, key string) {
		for from, to := range map[string]string{cert: certFile, key: keyFile} {
			b, err := os.ReadFile(from)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(to, b, 0o600))
		}
	}
	place(aCert, aKey)
	cfg, err := certfiles.ClientConfig(certfiles.Options{CAFile: filepath.Join(p.dir, "ca.pem"), CertFile: certFile, KeyFile: keyFile})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func() *ampybus.Bus {
		b, err := ampybus.Open(ctx, tlsURL, ampybus.WithDialOptions(natsbinding.ClientOptions(nats.Secure(cfg))))
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	open()
	assert.Equal(t, []string{"svc-a@ampy"}, users(t, srv.Server()))

	// Rotate: a new certificate and key on disk, a later modification time.
	time.Sleep(10 * time.Millisecond)
	place(bCert, bKey)
	later := time.Now().Add(time.Second)
	require.NoError(t, os.Chtimes(certFile, later, later))
	require.NoError(t, os.Chtimes(keyFile, later, later))
	open()
	assert.ElementsMatch(t, []string{"svc-a@ampy", "svc-b@ampy"}, users(t, srv.Server()), "the new connection presents the rotated certificate; the open one is untouched")

	// Without a client certificate, and without the CA.
	noCert, err := certfiles.ClientConfig(certfiles.Options{CAFile: filepath.Join(p.dir, "ca.pem")})
	require.NoError(t, err)
	_, err = ampybus.Open(ctx, tlsURL, ampybus.WithDialOptions(natsbinding.ClientOptions(nats.Secure(noCert))))
	require.ErrorIs(t, err, ampybus.ErrForbidden)
	assert.Regexp(t, `TLS handshake|authentication failed`, err.Error())
	noCA, err := certfiles.ClientConfig(certfiles.Options{CertFile: certFile, KeyFile: keyFile})
	require.NoError(t, err)
	_, err = ampybus.Open(ctx, tlsURL, ampybus.WithDialOptions(natsbinding.ClientOptions(nats.Secure(noCA))))
	require.ErrorIs(t, err, ampybus.ErrForbidden)
	assert.ErrorContains(t, err, "the server's TLS certificate is not trusted")
	assert.ErrorContains(t, err, "--tls-ca")
}
