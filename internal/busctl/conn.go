package busctl

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/certfiles"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

// globals are the root's persistent flags: which bus to open and how to
// authenticate. Each comes from its flag, else its environment variable,
// else the context in use (settle).
type globals struct {
	e                               *env
	bus, natsURL, brokers, kind     string
	user, pass, token, creds, nkey  string
	tlsCA, tlsCert, tlsKey          string
	tlsInsecure, kafkaTLS, verbose  bool
	provision                       bool
	saslMechanism, saslUser, saslPw string
}

// conn is what one command connects with: the global flags, and for a
// command that publishes its own --producer and --source.
type conn struct {
	*globals
	producer, source string
}

// setting is one global flag's sources, in order of precedence after the
// flag itself: its environment variable, then the context's value.
type setting struct {
	flag, envVar string
	dst          *string
	fromContext  func(*Context) string
}

// globalFlags declares the connection flags on the root's persistent flag
// set, so they are accepted before or after any command.
func (c *globals) globalFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.bus, "bus", "", "bus URL: nats://host:4222, kafka://h1:9092,h2:9092, embedded://nats|kafka ($AMPYBUS_URL; default embedded://nats)")
	fs.StringVar(&c.natsURL, "nats", "", "NATS URL (nats:// or tls://); same as --bus")
	fs.StringVar(&c.brokers, "brokers", "", "Kafka brokers, host:port,host:port; same as --bus kafka://…")
	fs.StringVar(&c.kind, "transport", "", "nats or kafka: with no URL, which embedded broker to start ($AMPYBUS_TRANSPORT)")
	fs.StringVar(&c.user, "user", "", "NATS user ($NATS_USER)")
	fs.StringVar(&c.pass, "pass", "", "NATS password ($NATS_PASS)")
	fs.StringVar(&c.token, "token", "", "NATS token ($NATS_TOKEN)")
	fs.StringVar(&c.creds, "creds", "", "NATS .creds file ($NATS_CREDS)")
	fs.StringVar(&c.nkey, "nkey-seed", "", "NATS nkey seed file ($NATS_NKEY_SEED)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA bundle for the broker's certificate ($AMPYBUS_TLS_CA)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate, for mTLS ($AMPYBUS_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "client key, for mTLS ($AMPYBUS_TLS_KEY)")
	fs.BoolVar(&c.tlsInsecure, "tls-insecure", false, "skip verifying the broker's certificate (never in production)")
	fs.BoolVar(&c.kafkaTLS, "tls", false, "Kafka: connect with TLS (implied by --tls-ca/--tls-cert)")
	fs.StringVar(&c.saslMechanism, "sasl-mechanism", "", "Kafka SASL: plain, scram-sha-256 or scram-sha-512 ($KAFKA_SASL_MECHANISM)")
	fs.StringVar(&c.saslUser, "sasl-user", "", "Kafka SASL user ($KAFKA_SASL_USER)")
	fs.StringVar(&c.saslPw, "sasl-pass", "", "Kafka SASL password ($KAFKA_SASL_PASS)")
	fs.BoolVarP(&c.verbose, "verbose", "v", false, "log the runtime's retries, reconnects and dead letters")
	// The flag package's spelling, which scripts written for it use.
	fs.BoolVar(&c.verbose, "v", false, "same as --verbose")
	_ = fs.MarkHidden("v")
	fs.BoolVar(&c.provision, "provision", false, "create or update the streams and topics a command uses ($AMPYBUS_PROVISION); needs the admin right. Without it a missing stream is an error naming ensure-topic")
}

// busGiven reports whether the command line names the bus.
func busGiven(fs *pflag.FlagSet) bool {
	return fs.Changed("bus") || fs.Changed("nats") || fs.Changed("brokers") || fs.Changed("transport")
}

// busInEnv reports whether the environment names the bus.
func busInEnv(getenv func(string) string) bool {
	return getenv("AMPYBUS_URL") != "" || getenv("AMPYBUS_TRANSPORT") != ""
}

// credentials lists the string flags an environment variable or a context
// can supply besides the bus: what to authenticate with.
func (c *globals) credentials() []setting {
	return []setting{
		{"user", "NATS_USER", &c.user, func(x *Context) string { return x.User }},
		{"pass", "NATS_PASS", &c.pass, func(x *Context) string { return x.Password }},
		{"token", "NATS_TOKEN", &c.token, func(x *Context) string { return x.Token }},
		{"creds", "NATS_CREDS", &c.creds, func(x *Context) string { return x.Creds }},
		{"nkey-seed", "NATS_NKEY_SEED", &c.nkey, func(x *Context) string { return x.NkeySeed }},
		{"tls-ca", "AMPYBUS_TLS_CA", &c.tlsCA, func(x *Context) string { return x.TLSCA }},
		{"tls-cert", "AMPYBUS_TLS_CERT", &c.tlsCert, func(x *Context) string { return x.TLSCert }},
		{"tls-key", "AMPYBUS_TLS_KEY", &c.tlsKey, func(x *Context) string { return x.TLSKey }},
		{"sasl-mechanism", "KAFKA_SASL_MECHANISM", &c.saslMechanism, func(x *Context) string { return x.SASLMechanism }},
		{"sasl-user", "KAFKA_SASL_USER", &c.saslUser, func(x *Context) string { return x.SASLUser }},
		{"sasl-pass", "KAFKA_SASL_PASS", &c.saslPw, func(x *Context) string { return x.SASLPassword }},
	}
}

// settle fills the global flags not given on the command line. The bus is
// settled as one: the command line's (--bus, --nats, --brokers,
// --transport), else the context's when one is in use, else the
// environment's. Each credential is its flag, else its environment
// variable, else the context's; x is nil when no context is in use, so a
// context's credentials never go to a bus it does not name.
func (c *globals) settle(fs *pflag.FlagSet, x *Context) {
	getenv := c.e.getenv
	switch {
	case busGiven(fs):
	case x != nil:
		c.bus = x.Bus
	default:
		c.bus, c.kind = getenv("AMPYBUS_URL"), getenv("AMPYBUS_TRANSPORT")
	}
	for _, s := range c.credentials() {
		if fs.Changed(s.flag) {
			continue
		}
		if v := getenv(s.envVar); v != "" {
			*s.dst = v
		} else if x != nil {
			*s.dst = s.fromContext(x)
		}
	}
	if !fs.Changed("provision") && getenv("AMPYBUS_PROVISION") != "" {
		c.provision = true
	}
	if x != nil {
		c.tlsInsecure = c.tlsInsecure || (!fs.Changed("tls-insecure") && x.TLSInsecure)
		c.kafkaTLS = c.kafkaTLS || (!fs.Changed("tls") && x.TLS)
	}
}

// connFlags returns the connection a command opens its bus with; a command
// that publishes also gets --producer and --source.
func (e *env) connFlags(fs *pflag.FlagSet, publishes bool) *conn {
	c := &conn{globals: e.global}
	if publishes {
		fs.StringVar(&c.producer, "producer", cmp.Or(e.getenv("AMPYBUS_PRODUCER"), "ampybusctl@"+hostname()), "producer header: service@instance ($AMPYBUS_PRODUCER)")
		fs.StringVar(&c.source, "source", cmp.Or(e.getenv("AMPYBUS_SOURCE"), "ampybusctl"), "source header: the upstream system ($AMPYBUS_SOURCE)")
	}
	return c
}

// url picks the bus URL from the flags and environment.
func (c *globals) url() (string, error) {
	set := 0
	for _, v := range []string{c.bus, c.natsURL, c.brokers} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return "", usagef("give one of --bus, --nats and --brokers")
	}
	if strings.Contains(c.brokers, "@") || (strings.HasPrefix(c.bus, "kafka://") && strings.Contains(c.bus, "@")) {
		return "", usagef("Kafka URLs take no user info: give --sasl-mechanism, --sasl-user and --sasl-pass (or a context holding them)")
	}
	switch {
	case c.bus != "":
		return c.bus, nil
	case c.natsURL != "":
		return c.natsURL, nil
	case c.brokers != "":
		return "kafka://" + strings.TrimPrefix(c.brokers, "kafka://"), nil
	}
	switch c.kind {
	case "":
	case "nats", "kafka":
		return "embedded://" + c.kind, nil
	default:
		return "", usagef("--transport %q: use nats or kafka", c.kind)
	}
	return ampybus.DefaultURL, nil
}

// open opens the bus in env with the connection flags.
func (c *conn) open(ctx context.Context, envName string, opts ...ampybus.Option) (*ampybus.Bus, error) {
	u, err := c.url()
	if err != nil {
		return nil, err
	}
	level := slog.LevelError
	if c.verbose {
		level = slog.LevelInfo
	}
	opts = append(opts, ampybus.WithEnv(envName), ampybus.WithLogger(slog.New(slog.NewJSONHandler(c.e.stderr, &slog.HandlerOptions{Level: level}))))
	if c.producer != "" {
		opts = append(opts, ampybus.WithProducer(c.producer, c.source))
	}
	if c.provision {
		opts = append(opts, ampybus.WithProvisioning())
	}
	dial, err := c.dialOption()
	if err != nil {
		return nil, err
	}
	return ampybus.Open(ctx, u, append(opts, dial)...)
}

// dialOption carries the credentials and TLS to whichever binding the URL
// names.
func (c *globals) dialOption() (ampybus.Option, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	natsOpts, err := c.natsOptions(tlsCfg)
	if err != nil {
		return nil, err
	}
	kafkaOpts, err := c.kafkaOptions(tlsCfg)
	if err != nil {
		return nil, err
	}
	return ampybus.WithDialOptions(natsbinding.ClientOptions(natsOpts...), kafkabinding.ClientOptions(kafkaOpts...)), nil
}

func (c *globals) tlsConfig() (*tls.Config, error) {
	if c.tlsCA == "" && c.tlsCert == "" && c.tlsKey == "" && !c.tlsInsecure && !c.kafkaTLS {
		return nil, nil
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	// Certificates rotated on disk are picked up by the next connection.
	cfg, err := certfiles.ClientConfig(certfiles.Options{CAFile: c.tlsCA, CertFile: c.tlsCert, KeyFile: c.tlsKey, InsecureSkipVerify: c.tlsInsecure})
	if err != nil {
		return nil, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
	}
	return cfg, nil
}

func (c *globals) natsOptions(tlsCfg *tls.Config) ([]nats.Option, error) {
	var opts []nats.Option
	if c.user != "" || c.pass != "" {
		opts = append(opts, nats.UserInfo(c.user, c.pass))
	}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
	}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	if c.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(c.nkey)
		if err != nil {
			return nil, fmt.Errorf("--nkey-seed: %w", err)
		}
		opts = append(opts, o)
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	return opts, nil
}

func (c *globals) kafkaOptions(tlsCfg *tls.Config) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	switch strings.ToLower(c.saslMechanism) {
	case "":
		if c.saslUser != "" {
			return nil, usagef("--sasl-user needs --sasl-mechanism (plain, scram-sha-256 or scram-sha-512)")
		}
	case "plain":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.saslUser, Pass: c.saslPw}.AsMechanism()))
	case "scram-sha-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.saslUser, Pass: c.saslPw}.AsSha256Mechanism()))
	case "scram-sha-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.saslUser, Pass: c.saslPw}.AsSha512Mechanism()))
	default:
		return nil, usagef("--sasl-mechanism %q: use plain, scram-sha-256 or scram-sha-512", c.saslMechanism)
	}
	return opts, nil
}

// note tells the user about an embedded broker that dies with the command.
func (c *globals) note(b *ampybus.Bus) {
	if u, _ := c.url(); strings.HasPrefix(u, "embedded://") {
		fmt.Fprintf(c.e.stderr, "note: %s runs inside this command and stops with it; for a broker other commands share, run `ampybusctl dev` and pass its URL with --bus\n", u)
	}
}
