// Package certfiles builds TLS client configurations from PEM files that
// operators rotate in place: the client certificate and key are read again
// when their files change, so new connections present the new certificate
// without a restart, and connections already open are left alone.
package certfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Options name the PEM files.
type Options struct {
	// CAFile holds the certificates that sign the broker's; empty trusts
	// the system's roots.
	CAFile string
	// CertFile and KeyFile are the client's certificate and key (mTLS);
	// both or neither.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any broker certificate: never in production.
	InsecureSkipVerify bool
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string
}

// ClientConfig returns a TLS client configuration. The key pair is loaded
// now, so a wrong path or a mismatched pair fails here, and again on the
// first handshake after either file changes.
func ClientConfig(o Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify, ServerName: o.ServerName} //nolint:gosec // opt-in, documented as never for production
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate file and its key file")
	}
	if o.CertFile != "" {
		kp := &keyPair{certFile: o.CertFile, keyFile: o.KeyFile}
		if _, err := kp.current(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.current() }
	}
	return cfg, nil
}

// keyPair is a certificate and key reloaded when either file changes.
type keyPair struct {
	certFile, keyFile string

	mu       sync.Mutex
	cert     *tls.Certificate
	certMod  time.Time
	keyMod   time.Time
	certSize int64
	keySize  int64
}

// current returns the pair on disk, reading it again only when a file's
// modification time or size changed since the last read.
func (k *keyPair) current() (*tls.Certificate, error) {
	ci, err := os.Stat(k.certFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	ki, err := os.Stat(k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && ci.ModTime().Equal(k.certMod) && ki.ModTime().Equal(k.keyMod) && ci.Size() == k.certSize && ki.Size() == k.keySize {
		return k.cert, nil
	}
	pair, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			// Mid-rotation (one file written, not the other): keep the pair
			// that worked until both agree.
			return k.cert, nil
		}
		return nil, fmt.Errorf("client certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.certMod, k.keyMod, k.certSize, k.keySize = &pair, ci.ModTime(), ki.ModTime(), ci.Size(), ki.Size()
	return k.cert, nil
}

// Explain says what a TLS failure means and what to do about it, or ""
// when err is not one: a certificate the client does not trust, or a
// handshake the server refused (a TLS alert, as when it requires a client
// certificate).
func Explain(err error) string {
	var op *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &host), errors.As(err, &verify):
		return "the broker's TLS certificate is not trusted: pass the CA that signed it (--tls-ca) and connect by a name the certificate holds"
	case errors.As(err, &op) && op.Op == "remote error": // a TLS alert from the server
		return "the broker refused the TLS handshake; one that verifies clients needs a client certificate its CA signed (--tls-cert, --tls-key)"
	}
	return ""
}
