package certfiles_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/testpki"
	"github.com/ampyfin/ampy-bus/runtime/certfiles"
)

func copyFile(t *testing.T, from, to string, mod time.Time) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o600))
	require.NoError(t, os.Chtimes(to, mod, mod))
}

func leafEmail(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	require.NoError(t, err)
	return leaf.EmailAddresses[0]
}

// The client certificate is read again when its files change; a half
// rotation (one file new, the other old) keeps the last good pair.
func TestClientCertificateFollowsTheFiles(t *testing.T) {
	p := testpki.New(t)
	aCert, aKey := p.Client("a", "a@ampy")
	bCert, bKey := p.Client("b", "b@ampy")
	certFile, keyFile := filepath.Join(p.Dir, "c.pem"), filepath.Join(p.Dir, "c-key.pem")
	t0 := time.Now().Add(-time.Minute)
	copyFile(t, aCert, certFile, t0)
	copyFile(t, aKey, keyFile, t0)
	cfg, err := certfiles.ClientConfig(certfiles.Options{CAFile: p.CAFile(), CertFile: certFile, KeyFile: keyFile})
	require.NoError(t, err)
	require.NotNil(t, cfg.RootCAs)
	get := func() string {
		c, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
		require.NoError(t, err)
		return leafEmail(t, c)
	}
	assert.Equal(t, "a@ampy", get())
	copyFile(t, bCert, certFile, t0.Add(time.Second))
	assert.Equal(t, "a@ampy", get(), "the certificate alone is new: the key does not match it yet")
	copyFile(t, bKey, keyFile, t0.Add(time.Second))
	assert.Equal(t, "b@ampy", get(), "both rotated")

	_, err = certfiles.ClientConfig(certfiles.Options{CertFile: certFile})
	assert.ErrorContains(t, err, "needs both its certificate file and its key file")
	_, err = certfiles.ClientConfig(certfiles.Options{CertFile: aCert, KeyFile: bKey})
	assert.ErrorContains(t, err, "private key does not match public key")
	_, err = certfiles.ClientConfig(certfiles.Options{CAFile: aKey})
	assert.ErrorContains(t, err, "no PEM certificates")
}

func TestExplain(t *testing.T) {
	assert.Contains(t, certfiles.Explain(x509.UnknownAuthorityError{}), "--tls-ca")
	assert.Contains(t, certfiles.Explain(&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}), "--tls-cert")
	assert.Empty(t, certfiles.Explain(errors.New("connection refused")))
}
