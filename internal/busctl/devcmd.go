package busctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ampyfin/ampy-bus/internal/demo"
	"github.com/ampyfin/ampy-bus/internal/loadbench"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/transport"
	"github.com/spf13/pflag"
)

func dev(e *env, fs *pflag.FlagSet) runFunc {
	withNATS := fs.Bool("nats", false, "run an embedded NATS JetStream server")
	withKafka := fs.Bool("kafka", false, "run an embedded Kafka cluster (kfake)")
	natsPort := fs.Int("nats-port", 4222, "NATS port on 127.0.0.1 (0: any free port)")
	kafkaPort := fs.Int("kafka-port", 9092, "Kafka port on 127.0.0.1 (0: any free port)")
	store := fs.String("store", "", "keep broker data under this directory across restarts (default: discarded on exit)")
	nodes := fs.Int("cluster", 1, "NATS nodes: 3 runs a JetStream cluster (ports nats-port, +1, +2), so streams get the contract's replicas")
	metrics := e.metricsFlag(fs)
	supervised := fs.Bool("supervised", false, hidden+"print one line, "+strings.TrimSpace(loadbench.ReadyLine)+" URL…, when ready, and stop when stdin closes (for bench's broker child)")
	return func(ctx context.Context, args []string) error {
		if *supervised {
			// The parent holds stdin open while it needs the brokers; it closes
			// when the parent ends, however it ends.
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			go func() {
				loadbench.Supervise(os.Stdin, e.stdout)
				cancel()
			}()
		}
		// The brokers' process: Go runtime and process metrics.
		if err := metrics.start(); err != nil {
			return err
		}
		defer metrics.close()
		if *nodes < 1 || *nodes > 5 {
			return usagef("--cluster %d: give 1 to 5 nodes", *nodes)
		}
		if !*withNATS && !*withKafka {
			*withNATS, *withKafka = true, true
		}
		var (
			stops []func()
			urls  []string
		)
		defer func() {
			for i := len(stops) - 1; i >= 0; i-- {
				stops[i]()
			}
		}()
		if *withNATS && *nodes > 1 {
			o := embedded.NATSClusterOptions{Nodes: *nodes}
			if *natsPort != 0 {
				for i := range *nodes {
					o.Ports = append(o.Ports, *natsPort+i)
				}
			}
			if *store != "" {
				o.StoreDir = filepath.Join(*store, "nats")
			}
			c, err := embedded.StartNATSCluster(o)
			if err != nil {
				return fmt.Errorf("start a %d-node NATS cluster from 127.0.0.1:%d: %w (ports in use? try --nats-port 0)", *nodes, *natsPort, err)
			}
			stops = append(stops, c.Shutdown)
			urls = append(urls, c.URL())
			fmt.Fprintf(e.stdout, "NATS JetStream cluster of %d nodes\n  export AMPYBUS_URL=%s\n", *nodes, c.URL())
		} else if *withNATS {
			o := embedded.NATSOptions{Port: *natsPort}
			if *store != "" {
				o.StoreDir = filepath.Join(*store, "nats")
			}
			n, err := embedded.StartNATS(o)
			if err != nil {
				return fmt.Errorf("start NATS on 127.0.0.1:%d: %w (another server on the port? try --nats-port 0)", *natsPort, err)
			}
			stops = append(stops, n.Shutdown)
			urls = append(urls, n.URL())
			fmt.Fprintf(e.stdout, "NATS JetStream  %s\n  export AMPYBUS_URL=%s\n", n.URL(), n.URL())
		}
		if *withKafka {
			o := embedded.KafkaOptions{Port: *kafkaPort}
			if *store != "" {
				o.DataDir = filepath.Join(*store, "kafka")
			}
			k, err := embedded.StartKafka(o)
			if err != nil {
				return fmt.Errorf("start Kafka on 127.0.0.1:%d: %w (another broker on the port? try --kafka-port 0)", *kafkaPort, err)
			}
			stops = append(stops, k.Shutdown)
			urls = append(urls, k.URL())
			fmt.Fprintf(e.stdout, "Kafka (kfake)   %s\n  export AMPYBUS_URL=%s\n", k.URL(), k.URL())
		}
		// The brokers are this process's: it provisions every stream of the
		// contract in every env, so services and commands with only their own
		// rights work against them at once.
		for _, u := range urls {
			n, err := provisionAll(ctx, u)
			if err != nil {
				return fmt.Errorf("provision %s: %w", u, err)
			}
			fmt.Fprintf(e.stdout, "  %d streams provisioned on %s\n", n, u)
		}
		if *supervised {
			fmt.Fprintln(e.stdout, loadbench.ReadyLine+strings.Join(urls, " "))
		}
		fmt.Fprintln(e.stdout, "ready; Ctrl-C to stop")
		if f, ok := e.stdout.(*os.File); ok {
			_ = f.Sync()
		}
		<-ctx.Done()
		fmt.Fprintln(e.stderr, "stopping")
		return nil
	}
}

func demoCmd(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	metrics := e.metricsFlag(fs)
	linger := fs.Duration("linger", 0, "with --metrics-addr, keep serving /metrics this long after the summary")
	return func(ctx context.Context, args []string) error {
		u, err := c.url()
		if err != nil {
			return err
		}
		if err := metrics.start(); err != nil {
			return err
		}
		defer metrics.close()
		rctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		dial, err := c.dialOption()
		if err != nil {
			return err
		}
		// The demo names its broker on stdout: scrubbed as stderr is.
		out := &scrubber{w: e.stdout, secrets: e.secrets}
		if err := demo.Run(rctx, u, out, demo.WithMetrics(metrics.exp), demo.WithBusOptions(dial)); err != nil {
			return err
		}
		metrics.linger(ctx, *linger)
		return nil
	}
}

// provisionAll creates every stream of the contract the CLI serves that
// the broker at url lacks, in every env, and reports how many it created.
func provisionAll(ctx context.Context, url string) (int, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	byEnv := map[string][]*ampybus.DomainSpec{}
	var envs []string
	for _, d := range catalog.Domains() {
		for _, env := range d.Envs {
			if byEnv[env] == nil {
				envs = append(envs, env)
			}
			byEnv[env] = append(byEnv[env], d)
		}
	}
	n := 0
	for _, env := range envs {
		b, err := ampybus.Open(ctx, url, ampybus.WithEnv(env), ampybus.WithProvisioning(), ampybus.WithLogger(quiet))
		if err != nil {
			return n, err
		}
		// Only what is missing: a broker restarted on its store already
		// has its streams, and reconciling them under live traffic gains
		// nothing (ensure-topic does that on request).
		var missing []*ampybus.DomainSpec
		for _, d := range byEnv[env] {
			s := transport.Stream{Prefix: d.Prefix(env), MaxPayload: d.MaxPayload}
			if cerr := b.Transport().CheckStream(ctx, s); errors.Is(cerr, transport.ErrNotFound) {
				missing = append(missing, d)
			} else if cerr != nil {
				err = cerr
				break
			}
		}
		if err == nil {
			err = b.Ensure(ctx, missing...)
		}
		_ = b.Close()
		if err != nil {
			return n, err
		}
		n += len(missing)
	}
	return n, nil
}
