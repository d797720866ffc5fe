package busctl

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ampyfin/ampy-bus/internal/demo"
	"github.com/ampyfin/ampy-bus/internal/fixtures"
	"github.com/ampyfin/ampy-bus/internal/loadbench"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/fixture"
	"github.com/ampyfin/ampy-bus/runtime/transport"
	"github.com/spf13/pflag"
)

func validateFixture(e *env, fs *pflag.FlagSet) runFunc {
	file := fs.String("file", "", "one fixture file")
	dir := fs.String("dir", "", "a directory of fixtures (*.json, recursively)")
	asJSON := fs.Bool("json", false, "print problems as JSON lines")
	return func(_ context.Context, args []string) error {
		if (*file == "") == (*dir == "") {
			return usagef("give --file or --dir")
		}
		var fxs []*fixture.Fixture
		var loadErr error
		if *file != "" {
			f, err := fixture.Load(*file)
			if err != nil {
				return err
			}
			fxs = []*fixture.Fixture{f}
		} else {
			fxs, loadErr = fixture.LoadDir(*dir)
			if fxs == nil && loadErr != nil {
				return loadErr
			}
		}
		bad := 0
		for _, f := range fxs {
			problems := fixture.Validate(catalog, f)
			if len(problems) > 0 {
				bad++
			}
			for _, p := range problems {
				if *asJSON {
					js, _ := json.Marshal(map[string]string{"file": p.Path, "field": p.Field, "problem": p.Message})
					fmt.Fprintln(e.stdout, string(js))
				} else {
					fmt.Fprintf(e.stdout, "FAIL %s: %s: %s\n", p.Path, p.Field, p.Message)
				}
			}
			if len(problems) == 0 && !*asJSON {
				format := ""
				if f.Upstream {
					format = " (upstream format)"
				}
				fmt.Fprintf(e.stdout, "ok   %s  %s%s\n", f.Path, f.Topic, format)
			}
		}
		if loadErr != nil {
			fmt.Fprintln(e.stderr, loadErr)
			bad++
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d fixture(s) break the contract", bad, len(fxs))
		}
		if !*asJSON {
			fmt.Fprintf(e.stderr, "%d fixture(s) valid\n", len(fxs))
		}
		return nil
	}
}

func fixturesCmd(e *env, fs *pflag.FlagSet) runFunc {
	out := fs.String("out", "fixtures", "directory to write the golden fixtures to")
	check := fs.Bool("check", false, "fail when the fixtures in --out differ from a fresh build")
	return func(_ context.Context, args []string) error {
		if foreign {
			// Another team's contract: one skeleton fixture per typed subtopic.
			payloads, err := fixtures.Skeletons(catalog)
			if err != nil {
				return err
			}
			files, err := fixtures.FilesFor(catalog, payloads)
			if err != nil {
				return err
			}
			if *check {
				if err := fixtures.CheckFiles(*out, files); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "fixtures in %s are current\n", *out)
				return nil
			}
			if err := fixtures.WriteFiles(*out, files); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %d skeleton fixtures to %s\n", len(payloads), *out)
			return nil
		}
		if *check {
			if err := fixtures.Check(*out); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "fixtures in %s are current\n", *out)
			return nil
		}
		if err := fixtures.Write(*out); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %d golden fixtures to %s\n", len(fixtures.Payloads()), *out)
		return nil
	}
}

// domainFlag resolves --topic, or --env with --domain, to a domain and env.
func domainFlag(topic, envName, domain string) (*ampybus.DomainSpec, string, error) {
	switch {
	case topic != "":
		if !strings.ContainsAny(topic, "*>") {
			if tp, err := catalog.Resolve(topic); err == nil {
				return tp.Domain, tp.Env, nil
			} else if len(strings.Split(topic, ".")) > 4 {
				return nil, "", err
			}
		}
		s, err := catalog.ResolveSubject(strings.TrimSuffix(topic, ".>") + ".>")
		if err != nil {
			return nil, "", err
		}
		if len(s.Domains) != 1 {
			return nil, "", fmt.Errorf("%w: %s spans %d domains; name one", ampybus.ErrContract, topic, len(s.Domains))
		}
		return s.Domains[0], s.Env, nil
	case domain != "":
		d, err := catalog.Domain(domain)
		if err != nil {
			return nil, "", err
		}
		return d, cmp.Or(envName, "dev"), nil
	}
	return nil, "", usagef("give --topic (e.g. ampy.dev.bars.v1.XNAS.AAPL or ampy.dev.bars.v1), or --env and --domain")
}

func ensureTopic(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	topic := fs.String("topic", "", "a topic of the domain, or its prefix (ampy.dev.bars.v1)")
	envName := fs.String("env", "", "environment, with --domain or --all (default: the context's env)")
	domain := fs.String("domain", "", "domain name, with --env")
	partitions := fs.Int("partitions", 0, "accepted for the upstream tool's sake; the contract owns partitions, and a different number is noted and ignored")
	all := fs.Bool("all", false, "every domain of the contract in --env")
	return func(ctx context.Context, args []string) error {
		if *all && (*topic != "" || *domain != "" || *partitions != 0) {
			return usagef("--all takes only --env")
		}
		if *topic != "" && (*envName != "" || *domain != "") {
			return usagef("--topic names the env and domain; give --topic, or --env and --domain")
		}
		if *topic == "" {
			*envName = cmp.Or(*envName, e.contextEnv())
		}
		var ds []*ampybus.DomainSpec
		envN := cmp.Or(*envName, "dev")
		if *all {
			ds = catalog.Domains()
		} else {
			d, en, err := domainFlag(*topic, *envName, *domain)
			if err != nil {
				return err
			}
			ds, envN = []*ampybus.DomainSpec{d}, en
			if *partitions != 0 && *partitions != d.Partitions {
				// The upstream tool took partitions on the command line; here the
				// contract owns them, and says so rather than refuse the command.
				fmt.Fprintf(e.stderr, "note: --partitions %d ignored: contract.yaml gives %s %d partitions (change the contract to change them; they can only grow)\n", *partitions, d.Name, d.Partitions)
			}
		}
		b, err := c.open(ctx, envN)
		if err != nil {
			return err
		}
		defer b.Close()
		c.note(b)
		for _, d := range ds {
			if err := b.Ensure(ctx, d); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "ensured %s on %s: %d partition(s), retention %s, max payload %d bytes, dedupe window %s\n",
				d.Prefix(envN), b.Transport().Name(), d.Partitions, d.RetentionIn(envN), d.MaxPayload, d.DedupeWindow)
		}
		return nil
	}
}

func listTopics(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	envName := e.envFlag(fs, "", "only this environment (default: the context's env, else every env of the contract)")
	asJSON := fs.Bool("json", false, "one JSON object per domain and env")
	return func(ctx context.Context, args []string) error {
		envs := catalog.Domains()[0].Envs
		if *envName != "" {
			if !slices.Contains(envs, *envName) {
				return usagef("--env %s is not one of the contract's envs (%s)", *envName, strings.Join(envs, ", "))
			}
			envs = []string{*envName}
		}
		b, err := c.open(ctx, envs[0])
		if err != nil {
			return err
		}
		defer b.Close()
		desc, err := describer(b)
		if err != nil {
			return err
		}
		streams, err := desc.Streams(ctx, catalog.Domains()[0].Namespace)
		if err != nil {
			return err
		}
		byPrefix := map[string]transport.StreamInfo{}
		for _, s := range streams {
			byPrefix[s.Prefix] = s
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		if !*asJSON {
			fmt.Fprintln(tw, "ENV\tTOPIC PREFIX\tON BROKER\tNAME\tMESSAGES\tPARTS\tSUBTOPICS")
		}
		for _, envN := range envs {
			for _, d := range catalog.Domains() {
				prefix := d.Prefix(envN)
				s, ok := byPrefix[prefix]
				delete(byPrefix, prefix)
				var pats []string
				for _, r := range catalog.Routes(d) {
					pats = append(pats, r.Spec.Pattern+" "+r.Spec.Schema.FQDN)
				}
				if len(pats) == 0 {
					pats = []string{"{domain} raw"}
				}
				if *asJSON {
					js, _ := json.Marshal(map[string]any{"env": envN, "prefix": prefix, "exists": ok, "name": s.Name, "messages": s.Messages, "partitions": s.Partitions, "subtopics": pats})
					fmt.Fprintln(e.stdout, string(js))
					continue
				}
				exists, name := "no", "-"
				if ok {
					exists, name = "yes", s.Name
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", envN, prefix, exists, name, s.Messages, s.Partitions, strings.Join(pats, "; "))
			}
		}
		if !*asJSON {
			for _, prefix := range slices.Sorted(maps.Keys(byPrefix)) {
				s := byPrefix[prefix]
				for _, envN := range envs {
					if strings.Contains(prefix, "."+envN+".") {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t(not in the contract)\n", envN, prefix, "yes", s.Name, s.Messages, s.Partitions)
					}
				}
			}
		}
		return tw.Flush()
	}
}

func describeTopic(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	topic := fs.String("topic", "", "a topic of the domain, or its prefix (ampy.dev.bars.v1)")
	return func(ctx context.Context, args []string) error {
		d, envN, err := domainFlag(*topic, "", "")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s (domain %s %s, env %s)\n", d.Prefix(envN), d.Name, d.Version, envN)
		// Labels in one column, the broker's line last: it may fail.
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		defer w.Flush()
		fmt.Fprintf(w, "  qos\t%s, p99 %s\n", d.QoS, d.LatencyP99)
		order := string(d.Ordering)
		if d.OrderBy != "" {
			order += " by " + d.OrderBy
		}
		if d.ExpiresBy != "" {
			order += ", expiring at " + d.ExpiresBy
		}
		fmt.Fprintf(w, "  ordering\tper partition key, %s\n", order)
		fmt.Fprintf(w, "  retry\t%d attempts, backoff %s up to %s, then %s\n", d.Retry.MaxAttempts, d.Retry.Backoff, d.Retry.MaxBackoff, ampybus.DeadLetterDomain(d).Prefix(envN)+"."+d.Name)
		fmt.Fprintf(w, "  limits\t%d partitions, %d replica(s), retention %s, max payload %d, gzip above %d, dedupe window %s\n", d.Partitions, max(d.Replicas, 1), d.RetentionIn(envN), d.MaxPayload, d.CompressAbove, d.DedupeWindow)
		pr := d.PublishRetry
		fmt.Fprintf(w, "  publish retry\tbackoff %s up to %s, give up after %s (same message id)\n", pr.Backoff, pr.MaxBackoff, pr.GiveUpAfter)
		for _, r := range catalog.Routes(d) {
			s := r.Spec
			fmt.Fprintf(w, "  subtopic\t%s.%s carries %s %s\n", d.Prefix(envN), s.Pattern, s.Schema.FQDN, s.Schema.Version)
			fmt.Fprintf(w, "\tpartition_key %s", s.PartitionKey)
			if s.DedupeKey != "" {
				fmt.Fprintf(w, ", dedupe_key %s", s.DedupeKey)
			}
			fmt.Fprintf(w, "\n\tschema_hash %s\n", s.Schema.Hash)
		}
		b, err := c.open(ctx, envN)
		if err != nil {
			return err
		}
		defer b.Close()
		desc, err := describer(b)
		if err != nil {
			return err
		}
		info, err := desc.DescribeStream(ctx, d.Prefix(envN))
		if errors.Is(err, transport.ErrNotFound) {
			fmt.Fprintf(w, "  on %s\tnot created yet (ampybusctl ensure-topic --topic %s, or publish to it)\n", b.Transport().Name(), d.Prefix(envN))
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  on %s\t%s: %d message(s), %d partition(s), %d replica(s), range %d..%d, retention %s, max message %d bytes\n",
			b.Transport().Name(), info.Name, info.Messages, info.Partitions, info.Replicas, info.First, info.Last, info.Retention, info.MaxMessageBytes)
		return nil
	}
}

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
	c := &conn{e: e}
	fs.StringVar(&c.bus, "bus", "", "bus URL: nats://host:4222, kafka://h1:9092, embedded://nats|kafka (default $AMPYBUS_URL, else embedded://nats)")
	fs.StringVar(&c.kind, "transport", "", "nats or kafka: with no URL, which embedded broker to start")
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
		if err := demo.Run(rctx, u, e.stdout, demo.WithMetrics(metrics.exp)); err != nil {
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
