// Package busctl is ampybusctl: the operator's commands (publish, subscribe,
// DLQ inspect and redrive, replay, bench, fixtures, topics, a local broker,
// the demo) over any transport. Every command goes through the runtime —
// the catalog, erased routes, taps — so the CLI and services agree on the
// contract by construction.
package busctl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// runFunc runs a command once its flags are parsed.
type runFunc func(ctx context.Context, args []string) error

// command is one subcommand: setup declares its flags on fs and returns
// what runs once they are parsed.
type command struct {
	name, args, help string
	// group is the heading the command is listed under in the help.
	group string
	setup func(e *env, fs *pflag.FlagSet) runFunc
	// positional checks the arguments besides flags; none are allowed
	// when nil.
	positional cobra.PositionalArgs
	validArgs  []string
	// explicitContext: the command uses a context only when --context names
	// one on its command line.
	explicitContext bool
}

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// tty reports whether stderr is a terminal, for progress lines.
	tty bool

	global    *globals
	contracts contractFlags
	// contextName is --context; context the one selected, if any.
	contextName string
	context     *Context
	// envDefaults are the commands' --env flags, defaulted from the context.
	envDefaults []envDefault
}

// envDefault is an --env flag left empty: the context's env fills it, else
// the command's own default.
type envDefault struct {
	dst      *string
	fallback string
}

var commands []command

func init() {
	commands = []command{
		{name: "pub-empty", group: "data", args: "--topic T [--pk K]", help: "publish the smallest payload the contract accepts on a topic", setup: pubEmpty},
		{name: "pub", group: "data", args: "--topic T (--payload JSON | --payload-file F) | --fixture F", help: "publish a protojson payload, or a golden fixture verbatim", setup: pub},
		{name: "sub", group: "data", args: "--subject S [--durable NAME] [--max N] [--from new|first|TIME]", help: "follow messages matching a subject, decoded", setup: sub},
		{name: "consume", group: "data", args: "--topic T|--subject S [--max N] [--decode] [--group G [--settle [--idle D]]]", help: "read what a topic holds, from the start, and exit; with --settle, consume as a member of the group (ack, retry, dead-letter)", setup: consume},
		{name: "dlq-inspect", group: "recovery", args: "--subject S [--max N] [--decode] [--outdir DIR] [--since TIME]", help: "show dead letters with their reasons, without removing them", setup: dlqInspect},
		{name: "dlq-redrive", group: "recovery", args: "--subject S [--max N] [--durable NAME] [--dry-run]", help: "put dead letters back on their original topics after a fix", setup: dlqRedrive},
		{name: "poison", group: "data", args: "--topic T [--pk K]", help: "publish an undecodable message, to watch it reach the DLQ", setup: poison},
		{name: "bench-pub", group: "dev", args: "--topic T [--pk K] --count N [--rate R] [--concurrency C] [--size B]", help: "measure publish throughput and latency", setup: benchPub},
		{name: "bench", group: "dev", explicitContext: true, args: "[--mode e2e|publish|consume] [--publishers N] [--consumers M] [--messages N] [--keys K] [--raw | --compare [--rounds R]] [--json]", help: "end-to-end benchmark of the typed API (or the raw client, or both compared) on a broker in a child process", setup: bench},
		{name: "replay", group: "recovery", args: "(--env E --domain D --version V [--subtopic S] | --subject S) --start T --end T --reason R [--key K] [--dry-run]", help: "post a replay request on the control topic and count its window", setup: replay},
		{name: "validate-fixture", group: "dev", args: "--file F | --dir D", help: "check golden fixtures against the contract", setup: validateFixture},
		{name: "fixtures", group: "dev", args: "[--out DIR] [--check]", help: "write (or check) the golden fixtures from their typed sources", setup: fixturesCmd},
		{name: "ensure-topic", group: "topics", args: "--topic T | --env E --domain D | --env E --all", help: "create or update a domain's stream/topic from the contract", setup: ensureTopic},
		{name: "list-topics", group: "topics", args: "[--env E]", help: "list the contract's domains and what the broker holds for each", setup: listTopics},
		{name: "describe-topic", group: "topics", args: "--topic T", help: "show a domain's contract and its stream/topic on the broker", setup: describeTopic},
		{name: "dev", group: "dev", explicitContext: true, args: "[--nats] [--kafka] [--cluster 3] [--nats-port P] [--kafka-port P] [--store DIR]", help: "run embedded brokers on loopback until Ctrl-C", setup: dev},
		{name: "demo", group: "dev", explicitContext: true, args: "", help: "play the seed's end-to-end trading flow (§19)", setup: demoCmd},
		{name: "audit", group: "recovery", args: "--env E --start T --end T [--account A] [--json]", help: "reconstruct a trading session from the bus and check positions against fills", setup: auditCmd},
		{name: "acl", group: "topics", args: "[apply] [--env E] [--service S] [--broker nats|kafka]", help: "print each service's least-privilege NATS users and Kafka ACLs from the contract; apply creates the Kafka ACLs", setup: aclCmd, positional: atMost(1), validArgs: []string{"apply"}},
		{name: "version", args: "", help: "print the version of ampybusctl and its runtime", setup: version},
	}
}

// versionText is the module version this binary was built from (a tag with
// go install, "(devel)" in a checkout) and the runtime's.
func versionText() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return fmt.Sprintf("%s (runtime %s)", v, ampybus.Version)
}

func version(e *env, _ *pflag.FlagSet) runFunc {
	return func(context.Context, []string) error {
		fmt.Fprintf(e.stdout, "ampybusctl %s\n", versionText())
		return nil
	}
}

// errNoCommand is ampybusctl run without a command: the help is the answer,
// with the usage exit code.
var errNoCommand = errors.New("no command")

// Main runs ampybusctl with args (without the program name) and returns the
// exit code: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, tty bool) int {
	e := &env{stdout: stdout, getenv: getenv, tty: tty}
	// Whatever reaches stderr — errors, the runtime's logs — has the
	// passwords and tokens it was given replaced.
	e.stderr = &scrubber{w: stderr, secrets: e.secrets}
	stderr = e.stderr
	root := e.tree()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	if errors.Is(err, errNoCommand) {
		return 2
	}
	name := strings.TrimPrefix(cmd.CommandPath(), root.Name()+" ")
	if cmd == root {
		name = root.Name()
	}
	prefix := "ampybusctl " + name
	if cmd == root {
		prefix = "ampybusctl"
	}
	if errors.As(err, new(*usageError)) {
		fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		if cmd != root {
			fmt.Fprintf(stderr, "usage: %s\n(ampybusctl %s -h lists its flags)\n", cmd.UseLine(), name)
		}
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", prefix, explain(err))
	return 1
}

// tree builds the command tree: the global flags on the root, a command per
// entry of commands, contexts and shell completion.
func (e *env) tree() *cobra.Command {
	e.global = &globals{e: e}
	root := &cobra.Command{
		Use:   "ampybusctl",
		Short: "ampybusctl operates an ampy-bus on NATS JetStream or Kafka.",
		Long: `ampybusctl operates an ampy-bus on NATS JetStream or Kafka.

The bus is --bus URL ($AMPYBUS_URL), or a saved context (ampybusctl context add):
nats://host:4222, kafka://host1:9092,host2:9092, embedded://nats (the default: an
in-process server that lives as long as the command) or embedded://kafka.
` + "`ampybusctl dev`" + ` runs embedded brokers for other commands to share.

Global flags go before or after the command. A flag given on the command line
wins over its environment variable, which wins over the context; a context
selected with "context use" steps aside when the bus is named on the command
line or in the environment.

The contract is the one ampybusctl was built with, or any team's: --contract FILE
with --proto_path DIR or --descriptor_set_in FILE.

The upstream tools' names work too: kafkabusctl CMD …, kafkainspect
[list-topics|describe-topic|consume] … and kafkapoison …, as first arguments or as
the program's name (a symlink).`,
		Version:           versionText(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				_ = cmd.Help()
				return errNoCommand
			}
			return usagef("unknown command %q%s; run ampybusctl help for the list", args[0], suggest(args[0]))
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch cmd.Name() {
			case cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
				return nil // completing settles the line's own flags (forCompletion)
			case "help", "version":
				return nil // never stopped by a broken context or contract
			}
			return e.resolve(cmd)
		},
		// An unknown command followed by flags is reported as the unknown
		// command, not as its first flag.
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef("%v", err) })
	root.SetUsageTemplate(usageTemplate)
	root.SetVersionTemplate("ampybusctl {{.Version}}\n")
	gf := root.PersistentFlags()
	e.global.globalFlags(gf)
	e.contracts.globalFlags(gf)
	gf.StringVar(&e.contextName, "context", "", "use this saved context for the bus, credentials, env and contract ($AMPYBUS_CONTEXT; ampybusctl context ls)")
	e.globalCompletions(root)

	root.AddGroup(
		&cobra.Group{ID: "data", Title: "Publish and read:"},
		&cobra.Group{ID: "recovery", Title: "Dead letters, replay and audit:"},
		&cobra.Group{ID: "topics", Title: "Topics and permissions:"},
		&cobra.Group{ID: "dev", Title: "Local brokers, fixtures and benchmarks:"},
	)
	for _, c := range commands {
		root.AddCommand(e.subcommand(c))
	}
	root.AddCommand(e.contextCmd())
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Short = "print the shell completion script for bash, zsh or fish (commands, flags, topics, subjects, envs)"
			c.PersistentPreRunE = func(*cobra.Command, []string) error { return nil }
		}
	}
	return root
}

// subcommand makes one command of the table a cobra command.
func (e *env) subcommand(c command) *cobra.Command {
	cmd := &cobra.Command{
		Use:               strings.TrimSpace(c.name + " " + c.args),
		Short:             c.help,
		GroupID:           c.group,
		Args:              c.positional,
		ValidArgs:         c.validArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	if cmd.Args == nil {
		cmd.Args = noArgs
	}
	if c.explicitContext {
		cmd.Annotations = map[string]string{explicitOnly: "yes"}
	}
	if len(c.validArgs) > 0 {
		cmd.ValidArgsFunction = nil
	}
	fs := cmd.Flags()
	run := c.setup(e, fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if strings.HasPrefix(f.Usage, hidden) {
			f.Hidden = true
		}
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := e.defaultEnvs(); err != nil {
			return err
		}
		return run(cmd.Context(), args)
	}
	e.flagCompletions(cmd)
	return cmd
}

// atMost allows up to n arguments besides flags.
func atMost(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("unexpected argument %q (flags take the form --name value)", args[n])
		}
		return nil
	}
}

// noArgs refuses arguments besides flags, naming the first.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q (flags take the form --name value)", args[0])
	}
	return nil
}

// resolve settles the global flags before a command runs: the context in
// use, then every flag not given from its environment variable or that
// context, then the contract.
func (e *env) resolve(cmd *cobra.Command) error {
	fs := cmd.Flags()
	x, err := e.contextInUse(cmd)
	if err != nil {
		return err
	}
	e.context = x
	e.global.settle(fs, x)
	e.contracts.settle(fs, e.getenv, x)
	return e.contracts.load(cmd.Context())
}

// envBusVar names the environment variable that names the bus.
func envBusVar(getenv func(string) string) string {
	if getenv("AMPYBUS_URL") != "" {
		return "$AMPYBUS_URL"
	}
	return "$AMPYBUS_TRANSPORT"
}

// explicitOnly marks a command that uses a context only when --context
// names one on its command line: bench and the demo load whatever bus they
// reach, so neither a selection nor an exported $AMPYBUS_CONTEXT picks it.
const explicitOnly = "ampybus-context-explicit-only"

// contextInUse is the context a command runs with, nil for none:
//   - one named by --context or $AMPYBUS_CONTEXT, whatever else is given;
//     flags given with it override its values one by one;
//   - else the one `context use` selected, unless the bus is named on the
//     command line or in the environment: a context's credentials never go
//     to a bus it does not name.
//
// A contexts file that cannot be read is an error when a context is named,
// and a warning otherwise, so it never stops a command that needs none.
func (e *env) contextInUse(cmd *cobra.Command) (*Context, error) {
	name := e.contextName
	switch {
	case cmd.Annotations[explicitOnly] != "" && !cmd.Flags().Changed("context"):
		return nil, nil // not even $AMPYBUS_CONTEXT: an exported variable lingers as a selection does
	case !cmd.Flags().Changed("context"):
		name = e.getenv("AMPYBUS_CONTEXT")
	}
	if name == "" && busGiven(cmd.Flags()) {
		return nil, nil
	}
	s, err := e.store()
	switch {
	case err != nil && name == "":
		if !errors.Is(err, errNoConfigDir) {
			fmt.Fprintf(e.stderr, "warning: %v; running without a context\n", err)
		}
		return nil, nil
	case err != nil:
		return nil, err
	}
	if name == "" && s.Current != "" && busInEnv(e.getenv) {
		// The surprise this note prevents: `ampybusctl dev` says to export
		// AMPYBUS_URL, and a later `context use prod` seems not to work.
		fmt.Fprintf(e.stderr, "note: the selected context %s is not used: %s names the bus (unset it to use the context)\n", s.Current, envBusVar(e.getenv))
		return nil, nil
	}
	if name == "" {
		name = s.Current
	}
	if name == "" {
		return nil, nil
	}
	x, err := s.get(name)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return x, nil
}

// envFlag declares a command's --env: empty means the context's env, else
// fallback ("" for every env, where the command says so).
func (e *env) envFlag(fs *pflag.FlagSet, fallback, usage string) *string {
	s := new(string)
	if fallback != "" {
		usage += fmt.Sprintf(" (default: the context's env, else %s)", fallback)
	}
	fs.StringVar(s, "env", "", usage)
	e.envDefaults = append(e.envDefaults, envDefault{dst: s, fallback: fallback})
	return s
}

// contextEnv is the selected context's env; "" without one.
func (e *env) contextEnv() string {
	if e.context == nil {
		return ""
	}
	return e.context.Env
}

// defaultEnvs fills the --env flags left empty; a context's env outside
// the contract is the context's mistake, and said so.
func (e *env) defaultEnvs() error {
	for _, d := range e.envDefaults {
		if *d.dst != "" {
			continue
		}
		if err := e.checkContextEnv(); err != nil {
			return err
		}
		*d.dst = cmp.Or(e.contextEnv(), d.fallback)
	}
	return nil
}

// checkContextEnv refuses a context whose env the contract lacks.
func (e *env) checkContextEnv() error {
	env := e.contextEnv()
	if env == "" {
		return nil
	}
	if envs := catalog.Domains()[0].Envs; !slices.Contains(envs, env) {
		return usagef("the context's env %s is not one of the contract's envs (%s): give --env, or save the context with another", env, strings.Join(envs, ", "))
	}
	return nil
}

// usageError is a mistake in the command line; the command's usage follows it.
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// explain adds the fix to errors whose message lacks one.
func explain(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, ampybus.ErrUnavailable) && !strings.Contains(msg, "nats-server") && !strings.Contains(msg, "-js") && !strings.Contains(msg, "listening there"):
		return msg + " (is the broker running and reachable? `ampybusctl dev` starts local ones)"
	case errors.Is(err, context.DeadlineExceeded):
		return msg + " (the broker did not answer in time: check the URL, and that NATS runs with -js)"
	}
	return msg
}

// hidden starts the usage of a flag the help leaves out: one ampybusctl
// passes to itself, such as dev's --supervised.
const hidden = "(internal) "

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
