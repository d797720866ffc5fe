package busctl

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ampyfin/ampy-bus/internal/loadbench"
	"github.com/spf13/pflag"
)

// bench runs internal/loadbench: typed publishers and a consumer group
// against the raw client, with the broker in a child process so the
// figures are the client's alone.
func bench(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, true)
	mode := fs.String("mode", "e2e", "e2e (publishers and consumers at once), publish (publishers only) or consume (drain a preloaded stream)")
	publishers := fs.Int("publishers", 4, "publishing clients, each its own connection")
	consumers := fs.Int("consumers", 1, "members of the one consumer group, each its own connection")
	concurrency := fs.Int("concurrency", 1, "keys each consumer handles at once")
	noGroup := fs.Bool("no-group", false, "subscribe outside any consumer group (one consumer): the engine without the group's partitioned delivery")
	fanout := fs.Int("fanout", 1, "subscriptions each consumer opens on its connection, each its own group that sees every message")
	messages := fs.Int("messages", 200000, "messages per run, across publishers")
	keys := fs.Int("keys", 100, "partition keys (symbols S00000… on XNAS) the messages are spread over")
	size := fs.Int("size", 512, "BarBatch size in bytes: bars are added until it is reached")
	rate := fs.Float64("rate", 0, "total messages per second across publishers; 0 = as fast as acks allow")
	sync := fs.Bool("sync", false, "wait for each publish's ack (default: async, within a window of 4096)")
	rawVT := fs.Bool("raw-vtproto", false, "the raw client encodes and decodes with the payload's generated MarshalVT and UnmarshalVT, as the typed API does, instead of proto.Marshal and proto.Unmarshal")
	raw := fs.Bool("raw", false, "run the raw client (nats.go jetstream or franz-go, same envelope) instead of the typed API")
	compare := fs.Bool("compare", false, "alternate typed and raw runs on one broker and print both with their ratio")
	rounds := fs.Int("rounds", 3, "with --compare, runs of each client")
	inproc := fs.Bool("inproc", false, "run the embedded broker in this process (its work then counts as the client's)")
	// Not the context's env: a benchmark loads the stream it is given.
	envName := fs.String("env", "dev", "contract env whose bars stream is used")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on a run after this long")
	asJSON := fs.Bool("json", false, "print one JSON document with every run and the summary")
	profile := fs.String("profile", "", "write CPU profiles of each run's measured window to this directory, the client's and the broker child's (go tool pprof -top FILE), and the client's allocations at both ends of it (go tool pprof -sample_index=alloc_objects -base RUN.allocs-base.pprof RUN.allocs.pprof)")
	return func(ctx context.Context, args []string) error {
		if *raw && *compare {
			return usagef("--raw and --compare: --compare runs both")
		}
		if *rawVT && !*raw && !*compare {
			return usagef("--raw-vtproto changes the raw client's codec: add --raw or --compare")
		}
		if *rounds < 1 {
			return usagef("--rounds %d: give at least 1", *rounds)
		}
		u, err := c.url()
		if err != nil {
			return err
		}
		tlsCfg, err := c.tlsConfig()
		if err != nil {
			return err
		}
		natsOpts, err := c.natsOptions(tlsCfg)
		if err != nil {
			return err
		}
		kafkaOpts, err := c.kafkaOptions(tlsCfg)
		if err != nil {
			return err
		}
		cfg := loadbench.Config{
			Env: *envName, Mode: loadbench.Mode(*mode), Publishers: *publishers, Consumers: *consumers, Concurrency: *concurrency, Fanout: *fanout, NoGroup: *noGroup,
			Messages: *messages, Keys: *keys, Size: *size, Rate: *rate, Sync: *sync, RawVTProto: *rawVT, Timeout: *timeout,
			Provision: c.provision, Producer: c.producer, Source: c.source, NATSOptions: natsOpts, KafkaOptions: kafkaOpts,
			Logger: benchLogger(e, c.verbose),
		}
		if err := cfg.Defaults().Check(); err != nil {
			return usagef("%v", err)
		}

		// The broker: the one --bus names, or an embedded one of its own.
		broker := loadbench.BrokerInfo{URL: u, Where: "given with --bus"}
		if kind, ok := strings.CutPrefix(u, "embedded://"); ok {
			if kind != "nats" && kind != "kafka" {
				return usagef("%s: the benchmark starts embedded://nats or embedded://kafka", u)
			}
			var br *loadbench.Broker
			if *inproc {
				br, err = loadbench.StartInProcess(kind)
			} else {
				br, err = startBrokerChild(ctx, kind)
			}
			if err != nil {
				return err
			}
			defer br.Close()
			broker = loadbench.BrokerInfo{URL: br.URL, Where: br.Where, PID: br.PID}
			cfg.OwnBroker = true
			if br.PID != 0 {
				cfg.BrokerCPU = br.CPU
				cfg.BrokerProfile = br.Profile
			}
		} else if *inproc {
			return usagef("--inproc starts an embedded broker; it does not go with --bus %s", redactURL(u))
		}
		cfg.URL = broker.URL
		broker.URL = redactURL(broker.URL) // the report's
		if *profile != "" {
			if err := os.MkdirAll(*profile, 0o755); err != nil {
				return fmt.Errorf("--profile: %w", err)
			}
			cfg.ProfileDir = *profile
		}
		prog := &progress{w: e.stderr, on: e.tty}
		cfg.Progress = func(p loadbench.Progress) {
			prog.update("bench %s %s: published %d/%d, consumed %d", p.Client, p.Phase, p.Published, p.Total, p.Consumed)
		}
		b, err := loadbench.New(ctx, cfg)
		if err != nil {
			return err
		}
		defer b.Close()
		var runs []*loadbench.Result
		switch {
		case *compare:
			runs, err = b.Compare(ctx, *rounds)
		default:
			client := loadbench.Typed
			if *raw {
				client = loadbench.Raw
			}
			var r *loadbench.Result
			if r, err = b.Run(ctx, client); err == nil {
				r.Round = 1
				runs = append(runs, r)
			}
		}
		prog.done()
		if err != nil {
			return err
		}
		rep := b.NewReport(broker, runs)
		if *asJSON {
			js, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, string(js))
			return nil
		}
		rep.Print(e.stdout)
		for _, r := range runs {
			for _, f := range r.Profiles {
				fmt.Fprintf(e.stderr, "profile %s\n", f)
			}
		}
		return nil
	}
}

// benchLogger logs the runtime's errors (with -v, its warnings and
// retries too) as JSON lines on stderr, as the other commands do.
func benchLogger(e *env, verbose bool) *slog.Logger {
	level := slog.LevelError
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// startBrokerChild runs `ampybusctl dev` for one broker on a free port, from
// this very executable, until the benchmark ends.
func startBrokerChild(ctx context.Context, kind string) (*loadbench.Broker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this executable to run the broker beside it: %w (or pass --inproc)", err)
	}
	br, err := loadbench.StartChild(ctx, exe, "dev", "--"+kind, "--"+kind+"-port", "0", "--supervised")
	if err != nil {
		return nil, fmt.Errorf("run the embedded %s broker as a child process: %w (or pass --inproc)", kind, err)
	}
	return br, nil
}
