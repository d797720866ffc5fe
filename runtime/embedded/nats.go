package embedded

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an in-process NATS server with JetStream, for development and
// tests: the real server, listening on loopback.
type NATS struct {
	srv     *server.Server
	dir     string
	ownsDir bool
}

// NATSOptions configure StartNATS; the zero value is a fresh server
// on a random loopback port with a temporary store.
type NATSOptions struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// StoreDir keeps JetStream data; empty means a temporary directory removed
	// on Shutdown. Restarting on the same StoreDir recovers the streams.
	StoreDir string
	// MaxPayload is the largest message the server accepts (default 8 MiB,
	// room for a 1 MiB payload, its headers and the dead-letter envelope).
	MaxPayload int32
	// ConfigFile is a nats-server configuration (authorization, TLS) read
	// first; the listen address, JetStream and the store still come from
	// these options, so the server stays on loopback.
	ConfigFile string
	// Logf, when set, receives the server's notices and errors (permission
	// violations among them).
	Logf func(format string, args ...any)
}

// GroupPingInterval and GroupMaxPingsOut are the embedded servers' client
// pings: a consumer-group member cut off without its connection closing (a
// network partition, a frozen process) holds its partitions until the
// server drops the connection, after about interval × (max+1), so this
// keeps that within a group's default failover of 5 s. nats-server's own
// default (2 min × 2) would hold them for minutes; templates/nats sets the
// same for deployments.
const (
	GroupPingInterval = time.Second
	GroupMaxPingsOut  = 2
)

// StartNATS starts a JetStream server on 127.0.0.1 and waits until it
// accepts connections.
func StartNATS(o NATSOptions) (*NATS, error) {
	e := &NATS{dir: o.StoreDir}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "ampybus-nats-*")
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		e.dir, e.ownsDir = d, true
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	maxPayload := o.MaxPayload
	if maxPayload == 0 {
		maxPayload = 8 << 20
	}
	opts := &server.Options{}
	if o.ConfigFile != "" {
		var err error
		if opts, err = server.ProcessConfigFile(o.ConfigFile); err != nil {
			e.cleanup()
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
	}
	opts.ServerName, opts.Host, opts.Port = "ampybus-embedded", "127.0.0.1", port
	opts.JetStream, opts.StoreDir, opts.MaxPayload = true, e.dir, maxPayload
	opts.NoSigs, opts.NoLog = true, o.Logf == nil
	if opts.PingInterval == 0 {
		opts.PingInterval, opts.MaxPingsOut = GroupPingInterval, GroupMaxPingsOut
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		e.cleanup()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if o.Logf != nil {
		srv.SetLoggerV2(logf(o.Logf), false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		e.cleanup()
		return nil, errors.New("embedded nats: not ready after 10s")
	}
	e.srv = srv
	return e, nil
}

// URL is the nats:// URL clients connect to.
func (e *NATS) URL() string { return e.srv.ClientURL() }

// StoreDir is where JetStream keeps its data.
func (e *NATS) StoreDir() string { return e.dir }

// Shutdown stops the server and removes a temporary store.
func (e *NATS) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.cleanup()
}

func (e *NATS) cleanup() {
	if e.ownsDir {
		os.RemoveAll(e.dir)
	}
}

// logf adapts a printf function to the server's logger.
type logf func(format string, args ...any)

func (l logf) Noticef(format string, v ...any) { l("[INF] "+format, v...) }
func (l logf) Warnf(format string, v ...any)   { l("[WRN] "+format, v...) }
func (l logf) Fatalf(format string, v ...any)  { l("[FTL] "+format, v...) }
func (l logf) Errorf(format string, v ...any)  { l("[ERR] "+format, v...) }
func (l logf) Debugf(format string, v ...any)  { l("[DBG] "+format, v...) }
func (l logf) Tracef(format string, v ...any)  { l("[TRC] "+format, v...) }

// Server is the running server, for tests that inspect its connections.
func (e *NATS) Server() *server.Server { return e.srv }
