// Package busctl is ampybusctl: the operator's commands (publish, subscribe,
// DLQ inspect and redrive, replay, bench, fixtures, topics, a local broker,
// the demo) over any transport. Every command goes through the runtime —
// the catalog, erased routes, taps — so the CLI and services agree on the
// contract by construction.
package busctl

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/dynamic"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/certfiles"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// command is one subcommand.
type command struct {
	name, args, help string
	run              func(ctx context.Context, e *env, args []string) error
}

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// tty reports whether stderr is a terminal, for progress lines.
	tty bool
}

var commands []command

func init() {
	commands = []command{
		{"pub-empty", "--topic T --producer P --source S [--pk K]", "publish the smallest payload the contract accepts on a topic", pubEmpty},
		{"pub", "--topic T --producer P --source S (--payload JSON | --payload-file F) | --fixture F", "publish a protojson payload, or a golden fixture verbatim", pub},
		{"sub", "--subject S [--durable NAME] [--max N] [--from new|first|TIME]", "follow messages matching a subject, decoded", sub},
		{"consume", "--topic T|--subject S [--max N] [--decode] [--group G [--settle [--idle D]]]", "read what a topic holds, from the start, and exit; with --settle, consume as a member of the group (ack, retry, dead-letter)", consume},
		{"dlq-inspect", "--subject S [--max N] [--decode] [--outdir DIR] [--since TIME]", "show dead letters with their reasons, without removing them", dlqInspect},
		{"dlq-redrive", "--subject S [--max N] [--durable NAME] [--dry-run]", "put dead letters back on their original topics after a fix", dlqRedrive},
		{"poison", "--topic T --producer P --source S [--pk K]", "publish an undecodable message, to watch it reach the DLQ", poison},
		{"bench-pub", "--topic T --producer P --source S [--pk K] --count N [--rate R] [--concurrency C] [--size B]", "measure publish throughput and latency", benchPub},
		{"bench", "[--mode e2e|publish|consume] [--publishers N] [--consumers M] [--messages N] [--keys K] [--size B] [--rate R] [--sync] [--raw | --compare [--rounds R]] [--transport nats|kafka | --bus URL | --inproc] [--json]", "end-to-end benchmark of the typed API (or the raw client, or both compared) on a broker in a child process", bench},
		{"replay", "(--env E --domain D --version V [--subtopic S] | --subject S) --start T --end T --reason R [--key K] [--dry-run]", "post a replay request on the control topic and count its window", replay},
		{"validate-fixture", "--file F | --dir D", "check golden fixtures against the contract", validateFixture},
		{"fixtures", "[--out DIR] [--check]", "write (or check) the golden fixtures from their typed sources", fixturesCmd},
		{"ensure-topic", "--topic T | --env E --domain D [--partitions N] | --env E --all", "create or update a domain's stream/topic from the contract", ensureTopic},
		{"list-topics", "[--env E]", "list the contract's domains and what the broker holds for each", listTopics},
		{"describe-topic", "--topic T", "show a domain's contract and its stream/topic on the broker", describeTopic},
		{"dev", "[--nats] [--kafka] [--cluster 3] [--nats-port P] [--kafka-port P] [--store DIR]", "run embedded brokers on loopback until Ctrl-C", dev},
		{"demo", "[--bus URL | --transport kafka]", "play the seed's end-to-end trading flow (§19)", demoCmd},
		{"audit", "--env E --start T --end T [--account A] [--json]", "reconstruct a trading session from the bus and check positions against fills", auditCmd},
		{"acl", "[apply] [--env E] [--service S] [--broker nats|kafka]", "print each service's least-privilege NATS users and Kafka ACLs from the contract; apply creates the Kafka ACLs", aclCmd},
		{"version", "", "print the version of ampybusctl and its runtime", version},
	}
}

// version prints the module version this binary was built from (a tag with
// go install, "(devel)" in a checkout) and the runtime's.
func version(_ context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	fmt.Fprintf(e.stdout, "ampybusctl %s (runtime %s)\n", v, ampybus.Version)
	return nil
}

// Main runs ampybusctl with args (without the program name) and returns the
// exit code: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, tty bool) int {
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv, tty: tty}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		rest, err := useContract(ctx, args[1:], getenv)
		if err != nil {
			fmt.Fprintf(stderr, "ampybusctl %s: %v\n", c.name, explain(err))
			if errors.As(err, new(*usageError)) {
				return 2
			}
			return 1
		}
		err = c.run(ctx, e, rest)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(*usageError)):
			fmt.Fprintf(stderr, "ampybusctl %s: %v\nusage: ampybusctl %s %s\n", c.name, err, c.name, c.args)
			return 2
		default:
			fmt.Fprintf(stderr, "ampybusctl %s: %v\n", c.name, explain(err))
			return 1
		}
	}
	fmt.Fprintf(stderr, "ampybusctl: unknown command %q%s; run ampybusctl help for the list\n", args[0], suggest(args[0]))
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ampybusctl operates an ampy-bus on NATS JetStream or Kafka.")
	fmt.Fprintln(w, "\nusage: ampybusctl <command> [flags]   (ampybusctl <command> -h for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-17s %s\n", c.name, c.help)
	}
	fmt.Fprintln(w, "\nThe bus is --bus URL or $AMPYBUS_URL: nats://host:4222, kafka://host1:9092,host2:9092,")
	fmt.Fprintln(w, "embedded://nats (the default: an in-process server that lives as long as the command) or")
	fmt.Fprintln(w, "embedded://kafka. `ampybusctl dev` runs embedded brokers for other commands to share.")
	fmt.Fprintln(w, "\nThe upstream tools' names work too: kafkabusctl CMD …, kafkainspect [list-topics|describe-topic|consume] …")
	fmt.Fprintln(w, "and kafkapoison …, as first arguments or as the program's name (a symlink).")
	fmt.Fprintln(w, "\nThe contract is the one ampybusctl was built with, or any team's: every command takes")
	fmt.Fprintln(w, "--contract FILE ($AMPYBUS_CONTRACT) with its payload schemas, --proto_path DIR (repeatable;")
	fmt.Fprintln(w, "$AMPYBUS_PROTO_PATH) or --descriptor_set_in FILE ($AMPYBUS_DESCRIPTOR_SET_IN).")
}

// upstreamTools are the upstream project's command names: kafkabusctl is
// this tool's command set, kafkainspect its inspection commands (consume
// when none is named), kafkapoison its poison command.
var upstreamTools = map[string]bool{"kafkabusctl": true, "kafkainspect": true, "kafkapoison": true}

// Args turns a process's argv into ampybusctl's arguments: invoked under an
// upstream tool's name (a symlink kafkapoison → ampybusctl), or given one as
// its first argument, the upstream command line runs as written.
func Args(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	args := argv[1:]
	if name := strings.TrimSuffix(filepath.Base(argv[0]), ".exe"); upstreamTools[name] {
		args = append([]string{name}, args...)
	}
	if len(args) == 0 {
		return args
	}
	switch args[0] {
	case "kafkabusctl":
		return args[1:]
	case "kafkainspect":
		if len(args) > 1 && (args[1] == "list-topics" || args[1] == "describe-topic" || args[1] == "consume") {
			return args[1:]
		}
		return append([]string{"consume"}, args[1:]...)
	case "kafkapoison":
		return append([]string{"poison"}, args[1:]...)
	}
	return args
}

// suggest names the command a mistyped one probably meant.
func suggest(name string) string {
	aliases := map[string]string{"publish": "pub", "subscribe": "sub", "dlq": "dlq-inspect", "validate": "validate-fixture", "publish-fixture": "pub --fixture"}
	if a, ok := aliases[name]; ok {
		return fmt.Sprintf(" (did you mean %s?)", a)
	}
	for _, c := range commands {
		if strings.HasPrefix(c.name, name) || strings.HasPrefix(name, c.name) {
			return fmt.Sprintf(" (did you mean %s?)", c.name)
		}
	}
	return ""
}

// usageError is a mistake in the command line; the command's usage follows it.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// explain adds the fix to errors whose message lacks one.
func explain(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, ampybus.ErrUnavailable) && !strings.Contains(msg, "nats-server") && !strings.Contains(msg, "-js"):
		return msg + " (is the broker running and reachable? `ampybusctl dev` starts local ones)"
	case errors.Is(err, context.DeadlineExceeded):
		return msg + " (the broker did not answer in time: check the URL, and that NATS runs with -js)"
	}
	return msg
}

// parse parses a command's flags, turning flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (flags take the form --name value)", fs.Arg(0))
	}
	return nil
}

// newFlags returns a command's flag set; -h prints its flags to stdout.
func (e *env) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		for _, c := range commands {
			if c.name == name {
				fmt.Fprintf(e.stdout, "usage: ampybusctl %s %s\n\n%s\n\nflags:\n", name, c.args, c.help)
			}
		}
		// Flags for ampybusctl's own use stay out of the help.
		shown := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.HasPrefix(f.Usage, hidden) {
				shown.Var(f.Value, f.Name, f.Usage)
				shown.Lookup(f.Name).DefValue = f.DefValue
			}
		})
		shown.SetOutput(e.stdout)
		shown.PrintDefaults()
	}
	return fs
}

// hidden starts the usage of a flag the help leaves out: one ampybusctl
// passes to itself, such as dev's --supervised.
const hidden = "(internal) "

// conn holds the flags that say which bus to open and how to authenticate.
type conn struct {
	e                               *env
	bus, natsURL, brokers, kind     string
	user, pass, token, creds, nkey  string
	tlsCA, tlsCert, tlsKey          string
	tlsInsecure, kafkaTLS           bool
	saslMechanism, saslUser, saslPw string
	producer, source                string
	verbose, provision              bool
}

func (e *env) connFlags(fs *flag.FlagSet, publishes bool) *conn {
	c := &conn{e: e}
	fs.StringVar(&c.bus, "bus", "", "bus URL: nats://host:4222, kafka://h1:9092,h2:9092, embedded://nats|kafka (default $AMPYBUS_URL, else embedded://nats)")
	fs.StringVar(&c.natsURL, "nats", "", "NATS URL (nats:// or tls://); same as --bus")
	fs.StringVar(&c.brokers, "brokers", "", "Kafka brokers, host:port,host:port; same as --bus kafka://…")
	fs.StringVar(&c.kind, "transport", "", "nats or kafka: with no URL, which embedded broker to start")
	fs.StringVar(&c.user, "user", e.getenv("NATS_USER"), "NATS user ($NATS_USER)")
	fs.StringVar(&c.pass, "pass", e.getenv("NATS_PASS"), "NATS password ($NATS_PASS)")
	fs.StringVar(&c.token, "token", e.getenv("NATS_TOKEN"), "NATS token ($NATS_TOKEN)")
	fs.StringVar(&c.creds, "creds", e.getenv("NATS_CREDS"), "NATS .creds file ($NATS_CREDS)")
	fs.StringVar(&c.nkey, "nkey-seed", e.getenv("NATS_NKEY_SEED"), "NATS nkey seed file ($NATS_NKEY_SEED)")
	fs.StringVar(&c.tlsCA, "tls-ca", e.getenv("AMPYBUS_TLS_CA"), "CA bundle for the broker's certificate")
	fs.StringVar(&c.tlsCert, "tls-cert", e.getenv("AMPYBUS_TLS_CERT"), "client certificate (mTLS)")
	fs.StringVar(&c.tlsKey, "tls-key", e.getenv("AMPYBUS_TLS_KEY"), "client key (mTLS)")
	fs.BoolVar(&c.tlsInsecure, "tls-insecure", false, "skip verifying the broker's certificate (never in production)")
	fs.BoolVar(&c.kafkaTLS, "tls", false, "Kafka: connect with TLS (implied by --tls-ca/--tls-cert)")
	fs.StringVar(&c.saslMechanism, "sasl-mechanism", e.getenv("KAFKA_SASL_MECHANISM"), "Kafka SASL: plain, scram-sha-256 or scram-sha-512")
	fs.StringVar(&c.saslUser, "sasl-user", e.getenv("KAFKA_SASL_USER"), "Kafka SASL user ($KAFKA_SASL_USER)")
	fs.StringVar(&c.saslPw, "sasl-pass", e.getenv("KAFKA_SASL_PASS"), "Kafka SASL password ($KAFKA_SASL_PASS)")
	fs.BoolVar(&c.verbose, "v", false, "log the runtime's retries, reconnects and dead letters")
	fs.BoolVar(&c.provision, "provision", e.getenv("AMPYBUS_PROVISION") != "", "create or update the streams and topics a command uses ($AMPYBUS_PROVISION); needs the admin right. Without it a missing stream is an error naming ensure-topic")
	if publishes {
		fs.StringVar(&c.producer, "producer", cmp.Or(e.getenv("AMPYBUS_PRODUCER"), "ampybusctl@"+hostname()), "producer header: service@instance")
		fs.StringVar(&c.source, "source", cmp.Or(e.getenv("AMPYBUS_SOURCE"), "ampybusctl"), "source header: the upstream system")
	}
	return c
}

// url picks the bus URL from the flags and environment.
func (c *conn) url() (string, error) {
	set := 0
	for _, v := range []string{c.bus, c.natsURL, c.brokers} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return "", usagef("give one of --bus, --nats and --brokers")
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
	if u := c.e.getenv("AMPYBUS_URL"); u != "" {
		return u, nil
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
	opts = append(opts, ampybus.WithDialOptions(natsbinding.ClientOptions(natsOpts...), kafkabinding.ClientOptions(kafkaOpts...)))
	b, err := ampybus.Open(ctx, u, opts...)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (c *conn) tlsConfig() (*tls.Config, error) {
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

func (c *conn) natsOptions(tlsCfg *tls.Config) ([]nats.Option, error) {
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

func (c *conn) kafkaOptions(tlsCfg *tls.Config) ([]kgo.Opt, error) {
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
func (c *conn) note(b *ampybus.Bus) {
	if u, _ := c.url(); strings.HasPrefix(u, "embedded://") {
		fmt.Fprintf(c.e.stderr, "note: %s runs inside this command and stops with it; for a broker other commands share, run `ampybusctl dev` and pass its URL with --bus\n", u)
	}
}

// catalog is the contract the CLI serves: the one it was built with, or
// the one --contract names.
var catalog = generated.Catalog

// foreign reports that --contract replaced the built-in contract.
var foreign bool

// loaded is the contract --contract named; nil for the built-in one.
var loaded *contract.Contract

// useContract takes the contract flags out of a command's arguments (every
// command accepts them) and loads the contract they name, with its payload
// schemas, as the catalog the command uses:
//
//	--contract FILE            a contract.yaml ($AMPYBUS_CONTRACT)
//	--proto_path DIR           an import root of its .proto files, repeatable ($AMPYBUS_PROTO_PATH, a path list)
//	--descriptor_set_in FILE   a FileDescriptorSet instead of, or besides, .proto files ($AMPYBUS_DESCRIPTOR_SET_IN)
//
// Without them the CLI serves the contract it was built with.
func useContract(ctx context.Context, args []string, getenv func(string) string) ([]string, error) {
	path := getenv("AMPYBUS_CONTRACT")
	var opts protoset.Options
	if v := getenv("AMPYBUS_PROTO_PATH"); v != "" {
		opts.ProtoPaths = filepath.SplitList(v)
	}
	if v := getenv("AMPYBUS_DESCRIPTOR_SET_IN"); v != "" {
		opts.DescriptorSets = filepath.SplitList(v)
	}
	var rest []string
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || (name != "contract" && name != "proto_path" && name != "descriptor_set_in") {
			rest = append(rest, args[i])
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, usagef("--%s needs a value", name)
			}
			i++
			val = args[i]
		}
		switch name {
		case "contract":
			path = val
		case "proto_path":
			opts.ProtoPaths = append(opts.ProtoPaths, val)
		case "descriptor_set_in":
			opts.DescriptorSets = append(opts.DescriptorSets, val)
		}
	}
	catalog, foreign, loaded = generated.Catalog, false, nil
	if path == "" {
		if len(opts.ProtoPaths)+len(opts.DescriptorSets) > 0 {
			return nil, usagef("--proto_path and --descriptor_set_in go with --contract FILE")
		}
		return rest, nil
	}
	schemas, err := protoset.Load(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("contract %s: %w", path, err)
	}
	c, err := contract.Load(path, schemas)
	if err != nil {
		return nil, err
	}
	catalog, foreign, loaded = dynamic.Catalog(c), true, c
	return rest, nil
}

// resolve resolves a --topic flag.
func resolve(topic string) (ampybus.Topic, error) {
	if topic == "" {
		return ampybus.Topic{}, usagef("--topic is required, e.g. --topic ampy.dev.bars.v1.XNAS.AAPL")
	}
	return catalog.Resolve(topic)
}

// typed resolves a topic that must carry a typed payload.
func typed(topic string) (ampybus.Topic, error) {
	tp, err := resolve(topic)
	if err != nil {
		return tp, err
	}
	if tp.Route == nil {
		return tp, fmt.Errorf("%w: %s is the %s domain, whose payloads are other topics' messages; publish to the original topic", ampybus.ErrContract, topic, tp.Domain.Name)
	}
	return tp, nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	return strings.Split(h, ".")[0]
}

func describer(b *ampybus.Bus) (transport.Describer, error) {
	d, ok := b.Transport().(transport.Describer)
	if !ok {
		return nil, fmt.Errorf("the %s binding cannot describe streams", b.Transport().Name())
	}
	return d, nil
}
