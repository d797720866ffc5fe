package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// ErrNoBinding: the URL's scheme names no binding this program imports.
var ErrNoBinding = errors.New("no binding for the URL scheme")

// DialConfig is what the bus hands a binding when it opens one.
type DialConfig struct {
	// URL is the bus URL as the caller gave it, scheme included.
	URL string
	// Name identifies the client to the broker (connection name, client id).
	Name string
	// AsyncWindow bounds async publishes awaiting their ack (0: the binding's default).
	AsyncWindow int
	// FailWhenFull makes PublishAsync fail at once with ErrBackpressure when
	// the window is full, instead of waiting for room.
	FailWhenFull bool
	Logger       *slog.Logger
	// Options are binding-specific settings (TLS, credentials, an embedded
	// broker's store). Each binding reads its own and ignores the others',
	// so one service passes both brokers' and only the URL picks.
	Options []DialOption
}

// DialOption is one binding's own setting, made by that binding's package
// (natsbinding.ClientOptions, kafkabinding.ClientOptions, embedded.StoreDir).
type DialOption interface {
	// Binding names the binding that reads the option: "nats", "kafka", "embedded".
	Binding() string
}

// Dialed is an opened binding.
type Dialed struct {
	Transport Transport
	// URL is where the transport connected: for an embedded broker its
	// loopback address, so other processes can join it.
	URL string
	// Stop, when set, runs after the transport is closed (an embedded
	// broker's shutdown).
	Stop func()
	// Owned: the process started the broker itself, so it provisions the
	// streams it uses (as WithProvisioning does).
	Owned bool
}

// Dialer opens a binding for a URL of the scheme it registered.
type Dialer func(ctx context.Context, cfg DialConfig) (Dialed, error)

var (
	dialersMu sync.RWMutex
	dialers   = map[string]Dialer{}
)

// Register makes a binding available under URL schemes, as database/sql
// drivers are: a binding package registers itself in init, so a program
// links only the brokers it imports. Registering a scheme twice panics.
func Register(d Dialer, schemes ...string) {
	dialersMu.Lock()
	defer dialersMu.Unlock()
	for _, s := range schemes {
		if _, dup := dialers[s]; dup {
			panic("transport: Register called twice for scheme " + s)
		}
		dialers[s] = d
	}
}

// Schemes lists the registered URL schemes, sorted.
func Schemes() []string {
	dialersMu.RLock()
	defer dialersMu.RUnlock()
	out := make([]string, 0, len(dialers))
	for s := range dialers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// bindingPackages says which package to import for a scheme nobody registered.
var bindingPackages = map[string]string{
	"nats": "natsbinding", "tls": "natsbinding", "ws": "natsbinding", "wss": "natsbinding",
	"kafka": "kafkabinding", "embedded": "embedded",
}

// Dial opens the binding registered for scheme.
func Dial(ctx context.Context, scheme string, cfg DialConfig) (Dialed, error) {
	dialersMu.RLock()
	d, ok := dialers[scheme]
	dialersMu.RUnlock()
	if !ok {
		if pkg, known := bindingPackages[scheme]; known {
			return Dialed{}, fmt.Errorf("%w %q: import _ \"github.com/ampyfin/ampy-bus/runtime/%s\" to link it", ErrNoBinding, scheme, pkg)
		}
		have := "none (import a binding package)"
		if s := Schemes(); len(s) > 0 {
			have = strings.Join(s, "://, ") + "://"
		}
		return Dialed{}, fmt.Errorf("%w %q: this program has %s", ErrNoBinding, scheme, have)
	}
	return d(ctx, cfg)
}

// OptionsFor returns the options of one binding, in order.
func OptionsFor[T DialOption](opts []DialOption) []T {
	var out []T
	for _, o := range opts {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
