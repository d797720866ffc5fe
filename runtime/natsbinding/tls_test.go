package natsbinding_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/testpki"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/certfiles"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

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
	p := testpki.New(t)
	srvCert, srvKey := p.Server("server")
	conf := filepath.Join(p.Dir, "server.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`
tls {
  cert_file: "`+srvCert+`"
  key_file: "`+srvKey+`"
  ca_file: "`+p.CAFile()+`"
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
	aCert, aKey := p.Client("svc-a", "svc-a@ampy")
	bCert, bKey := p.Client("svc-b", "svc-b@ampy")
	certFile, keyFile := filepath.Join(p.Dir, "client.pem"), filepath.Join(p.Dir, "client-key.pem")
	place := func(cert, key string) {
		for from, to := range map[string]string{cert: certFile, key: keyFile} {
			b, err := os.ReadFile(from)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(to, b, 0o600))
		}
	}
	place(aCert, aKey)
	cfg, err := certfiles.ClientConfig(certfiles.Options{CAFile: p.CAFile(), CertFile: certFile, KeyFile: keyFile})
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
	noCert, err := certfiles.ClientConfig(certfiles.Options{CAFile: p.CAFile()})
	require.NoError(t, err)
	_, err = ampybus.Open(ctx, tlsURL, ampybus.WithDialOptions(natsbinding.ClientOptions(nats.Secure(noCert))))
	require.ErrorIs(t, err, ampybus.ErrForbidden)
	assert.Regexp(t, `TLS handshake|authentication failed`, err.Error())
	noCA, err := certfiles.ClientConfig(certfiles.Options{CertFile: certFile, KeyFile: keyFile})
	require.NoError(t, err)
	_, err = ampybus.Open(ctx, tlsURL, ampybus.WithDialOptions(natsbinding.ClientOptions(nats.Secure(noCA))))
	require.ErrorIs(t, err, ampybus.ErrForbidden)
	assert.ErrorContains(t, err, "TLS certificate is not trusted")
	assert.ErrorContains(t, err, "--tls-ca")
}
