package main_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/dynamic"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
)

// bin is the ampybusctl binary the tests run, as a user would.
var bin string

// config is the config directory the runs see, so a developer's own
// contexts never reach a test; a test of contexts passes its own.
var config string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ampybusctl-test")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "ampybusctl")
	config = filepath.Join(dir, "config")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build ampybusctl: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// ctl runs ampybusctl with args and the given extra environment.
func ctl(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = "../.." // the repository root, where the README's commands run
	cmd.Env = append(append(os.Environ(), isolated()...), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// isolated clears the environment variables a user's shell may set for
// ampybusctl, and points its config directory away from the user's.
func isolated() []string {
	return []string{"AMPYBUS_URL=", "AMPYBUS_CONTEXT=", "AMPYBUS_TRANSPORT=", "XDG_CONFIG_HOME=" + config}
}

// ok runs a command that must succeed and returns its stdout.
func ok(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := ctl(t, env, args...)
	require.Equal(t, 0, r.code, "ampybusctl %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r.stdout
}

// Mistakes get one line that says what is wrong and how to fix it, and a
// non-zero exit: 2 for the command line, 1 for everything else.
func TestErrorsSayTheFix(t *testing.T) {
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go plain.Start()
	require.True(t, plain.ReadyForConnections(5*time.Second))
	t.Cleanup(plain.Shutdown) // after the parallel subtests

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"upstream command name", []string{"publish"}, 2, "did you mean pub?"},
		{"unknown flag", []string{"sub", "--bogus"}, 2, "unknown flag: --bogus"},
		{"stray argument", []string{"sub", "ampy.dev.bars.v1.>"}, 2, "unexpected argument"},
		{"underscores", []string{"pub-empty", "--topic", "ampy.dev_bars_v1_XNAS_AAPL"}, 1, `uses underscores where dots belong: use "ampy.dev.bars.v1.XNAS.AAPL"`},
		{"topic outside the contract", []string{"pub-empty", "--topic", "test.message", "--producer", "test@cli", "--source", "test", "--pk", "test"}, 1, "is outside the contract: topics are ampy.{env}.{domain}.{version}.{subtopic}"},
		{"unknown domain", []string{"pub-empty", "--topic", "ampy.dev.barz.v1.XNAS.AAPL"}, 1, `domain "barz" is not in the contract`},
		{"key that does not fit", []string{"pub-empty", "--topic", "ampy.prod.fills.v1.events", "--pk", "fill_20250101_001"}, 1, "does not fit the contract's template {account_id}|{client_order_id}"},
		{"subject without env", []string{"sub", "--subject", "ampy.>"}, 1, "must name one env"},
		{"unreachable broker", []string{"pub-empty", "--bus", "nats://127.0.0.1:1", "--topic", "ampy.dev.bars.v1.XNAS.AAPL"}, 1, "is nats-server running there with JetStream enabled"},
		{"unreachable kafka", []string{"list-topics", "--brokers", "127.0.0.1:1"}, 1, "broker unavailable"},
		{"broker without JetStream", []string{"pub-empty", "--bus", plain.ClientURL(), "--topic", "ampy.dev.bars.v1.XNAS.AAPL"}, 1, "has no JetStream: broker unavailable: start it with nats-server -js"},
		{"bad bus URL", []string{"pub-empty", "--bus", "amqp://x", "--topic", "ampy.dev.bars.v1.XNAS.AAPL"}, 1, "this program has embedded://, kafka://, nats://"},
		{"replay without reason", []string{"replay", "--subject", "ampy.prod.bars.v1.>", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-01T01:00:00Z"}, 2, "--reason is required"},
		{"replay with local time", []string{"replay", "--subject", "ampy.prod.bars.v1.>", "--start", "2025-01-01T00:00:00+01:00", "--end", "2025-01-01T01:00:00Z", "--reason", "x"}, 2, "not UTC"},
		{"dlq-inspect on a data subject", []string{"dlq-inspect", "--subject", "ampy.prod.bars.v1.>"}, 1, "is not a dead-letter subject"},
		{"dlq-redrive across domains", []string{"dlq-redrive", "--subject", "ampy.prod.>"}, 1, "is not a dead-letter subject"},
		{"subject without version", []string{"replay", "--subject", "ampy.prod.bars", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-01T01:00:00Z", "--reason", "x"}, 1, "add the version and .>"},
		{"replay with both forms", []string{"replay", "--subject", "ampy.prod.bars.v1.>", "--version", "v2", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-01T01:00:00Z", "--reason", "x"}, 2, "give one form"},
		{"validate without a file", []string{"validate-fixture"}, 2, "give --file or --dir"},
		{"version with an argument", []string{"version", "x"}, 2, `unexpected argument "x"`},
		{"acl with two arguments", []string{"acl", "apply", "x"}, 2, `unexpected argument "x"`},
		{"unknown context command", []string{"context", "frob"}, 2, `unknown command "frob": context takes add, ls, use, show or rm`},
		{"context use with two names", []string{"context", "use", "a", "b"}, 2, `unexpected argument "b"`},
		{"unknown command with flags", []string{"frob", "--topic", "x"}, 2, `unknown command "frob"`},
		{"subject one token too long", []string{"sub", "--subject", "ampy.prod.bars.v1.XNAS.AAPL.extra"}, 1, "matches no topic the contract allows: the bars domain's subtopics are {mic}.{symbol}: did you mean ampy.prod.bars.v1.XNAS.AAPL?"},
		{"dead letter's own topic as a subject", []string{"dlq-inspect", "--subject", "ampy.prod.dlq.v1.ampy.prod.bars.v1.XNAS.AAPL"}, 1, "did you mean ampy.prod.dlq.v1.bars?"},
		{"publish to a topic off its pattern", []string{"pub-empty", "--topic", "ampy.dev.bars.v1.XNAS.AAPL.extra", "--pk", "XNAS.AAPL"}, 1, "did you mean ampy.dev.bars.v1.XNAS.AAPL?"},
		{"replay of a subject off its pattern", []string{"replay", "--subject", "ampy.prod.ticks.v1.trades.*", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-01T01:00:00Z", "--reason", "x"}, 1, "the ticks domain's subtopics are trade.{symbol} or quote.{symbol}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := ctl(t, nil, tt.args...)
			assert.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			out := r.stderr
			if tt.args == nil {
				out = r.stdout
			}
			assert.Contains(t, out, tt.want)
			if tt.code == 1 {
				assert.Equal(t, 1, strings.Count(strings.TrimSpace(withoutNotes(r.stderr)), "\n")+1, "one line: %q", r.stderr)
				assert.True(t, strings.HasPrefix(r.stderr, "ampybusctl "), r.stderr)
			}
		})
	}
}

func withoutNotes(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "note: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// brokers starts one embedded broker of each kind for a test, with every
// stream of the built-in contract provisioned, as ampybusctl dev does.
func brokers(t *testing.T) map[string]string {
	t.Helper()
	n, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	t.Cleanup(n.Shutdown)
	k, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	t.Cleanup(k.Shutdown)
	urls := map[string]string{"nats": n.URL(), "kafka": k.URL()}
	for _, u := range urls {
		provision(t, u)
	}
	return urls
}

// provision creates every stream of the built-in contract in every env.
func provision(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, env := range []string{"dev", "paper", "prod"} {
		b, err := ampybus.Open(ctx, url, ampybus.WithEnv(env), ampybus.WithProvisioning())
		require.NoError(t, err)
		require.NoError(t, b.Ensure(ctx, generated.Catalog.Domains()...))
		require.NoError(t, b.Close())
	}
}

// The seed's commands, run as a user would, against each transport.
func TestSeedCommandsOnEveryTransport(t *testing.T) {
	for name, url := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := []string{"AMPYBUS_URL=" + url}

			out := ok(t, env, "pub-empty", "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--producer", "yfinance-go@ingest-1", "--source", "yfinance-go", "--pk", "XNAS.AAPL")
			assert.Regexp(t, `^published ampy.prod.bars.v1.XNAS.AAPL .* partition_key XNAS.AAPL`, out)
			out = ok(t, env, "consume", "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--max", "10", "--decode")
			assert.Contains(t, out, "producer            yfinance-go@ingest-1")
			assert.Contains(t, out, "schema_fqdn         ampy.bars.v1.BarBatch")

			// sub follows new messages until --max.
			sub := start(t, env, "sub", "--topic", "ampy.prod.ticks.v1.trade.>", "--group", "cli-consumer", "--max", "1")
			sub.waitStderr(t, "listening on ampy.prod.ticks.v1.trade.>")
			// (--topic and --group are kafkabusctl's names for --subject and --durable.)
			ok(t, env, "pub-empty", "--topic", "ampy.prod.ticks.v1.trade.MSFT", "--producer", "databento-cpp@tick-1", "--source", "databento-cpp", "--pk", "MSFT.XNAS")
			out = sub.wait(t)
			assert.Contains(t, out, "── ampy.prod.ticks.v1.trade.MSFT")
			assert.Contains(t, out, `"mic": "XNAS"`)

			// A poison message reaches the DLQ through a real consumer, the
			// CLI's own (consume --settle, a member of the OMS's group); the
			// CLI inspects it, dumps it as a fixture, and redrives it once.
			out = ok(t, env, "poison", "--topic", "ampy.prod.orders.v1.requests", "--producer", "poison@test", "--source", "poison-test", "--pk", "co_poison_1")
			assert.Contains(t, out, "will dead-letter it to ampy.prod.dlq.v1.orders")
			r := ctl(t, env, "consume", "--topic", "ampy.prod.orders.v1.>", "--group", "oms", "--settle", "--max", "1")
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stderr, "consuming ampy.prod.orders.v1.requests as group oms")
			assert.Contains(t, r.stderr, "settled 1 message(s) as group oms: 0 handled, 1 dead-lettered")
			dump := t.TempDir()
			out = ok(t, env, "dlq-inspect", "--subject", "ampy.prod.dlq.v1.>", "--max", "10", "--decode", "--outdir", dump)
			assert.Contains(t, out, "dlq_reason          decode_error")
			assert.Contains(t, out, "dlq_original_topic  ampy.prod.orders.v1.requests")
			dumped, _ := filepath.Glob(filepath.Join(dump, "*.json"))
			require.Len(t, dumped, 1)
			r = ctl(t, nil, "validate-fixture", "--file", dumped[0])
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stdout, "payload_base64: does not decode as ampy.orders.v1.OrderRequest")
			out = ok(t, env, "dlq-redrive", "--subject", "ampy.prod.dlq.v1.>", "--max", "5")
			assert.Regexp(t, `redriven ampy.prod.dlq.v1.orders seq \d+ → ampy.prod.orders.v1.requests seq \d+`, out)
			r = ctl(t, env, "dlq-redrive", "--subject", "ampy.prod.dlq.v1.>", "--max", "5")
			assert.Equal(t, 0, r.code)
			assert.Contains(t, r.stderr, "0 dead letter(s) redriven", "the redrive group remembers")
			out = ok(t, env, "consume", "--topic", "ampy.prod.orders.v1.requests", "--max", "10")
			assert.Contains(t, out, "retry_count         1")
			assert.Contains(t, out, "redrive_of          ampy.prod.dlq.v1.orders/")

			// bench-pub reports throughput and percentiles.
			out = ok(t, env, "bench-pub", "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--producer", "bench@test", "--source", "bench", "--pk", "XNAS.AAPL", "--count", "200", "--concurrency", "4", "--size", "512")
			assert.Regexp(t, `Published 200 messages in .* \(\d+\.\d msg/s\) to ampy.prod.bars.v1.XNAS.AAPL on `+name, out)
			assert.Regexp(t, `latency p50 [\d.]+ms  p95 [\d.]+ms  p99 [\d.]+ms  p99.9 [\d.]+ms  max [\d.]+ms`, out)

			// replay counts its window and posts the request on the control topic.
			from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
			out = ok(t, env, "replay", "--env", "prod", "--domain", "bars", "--version", "v1", "--subtopic", "XNAS.AAPL", "--start", from, "--end", to, "--reason", "backtest")
			assert.Contains(t, out, "holds 202 message(s) on 1 key(s)", "1 pub-empty, 1 bench warm-up, 200 bench")
			assert.Contains(t, out, "posted replay request rr_")
			out = ok(t, env, "consume", "--topic", "ampy.prod.control.v1.replay_requests", "--decode", "--json")
			assert.Contains(t, out, `"reason":"backtest"`)
			assert.Contains(t, out, `"subject":"ampy.prod.bars.v1.XNAS.AAPL"`)

			// A golden fixture goes out verbatim; a protojson payload gets its keys from the contract.
			ok(t, env, "pub", "--fixture", "fixtures/orders/typical.json")
			out = ok(t, env, "pub", "--topic", "ampy.prod.orders.v1.requests", "--producer", "ampy-oms@oms-1", "--source", "ampy-oms", "--payload", `{"client_order_id":"co_json_1","account_id":"ALPACA-LIVE-01","created_at":"2025-01-01T14:30:00Z"}`)
			assert.Contains(t, out, "partition_key co_json_1")

			ok(t, env, "ensure-topic", "--topic", "ampy.prod.fills.v1.events")
			out = ok(t, env, "list-topics", "--env", "prod")
			assert.Regexp(t, `(?m)^prod\s+ampy\.prod\.fills\.v1\s+yes`, out)
			assert.Regexp(t, `(?m)^prod\s+ampy\.prod\.positions\.v1\s+yes`, out, "provisioned with the broker, as ampybusctl dev does")
			assert.NotContains(t, out, "ampy.dev.", "--env narrows to one env")
			// Without --env, every env of the contract, each on the broker.
			out = ok(t, env, "list-topics")
			for _, e := range []string{"dev", "paper", "prod"} {
				assert.Regexp(t, `(?m)^`+e+`\s+ampy\.`+e+`\.fills\.v1\s+yes\s`, out)
			}
			out = ok(t, env, "describe-topic", "--topic", "ampy.prod.bars.v1.XNAS.AAPL")
			assert.Contains(t, out, "partition_key {mic}.{symbol}")
			assert.Regexp(t, `on `+name+`\s+\S+: 202 message\(s\)`, out)
		})
	}
}

// proc is a command running in the background.
type proc struct {
	cmd      *exec.Cmd
	out      syncBuffer
	errLines chan string
	done     chan error
}

// syncBuffer is a bytes.Buffer safe to read while the command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), errLines: make(chan string, 100), done: make(chan error, 1)}
	p.cmd.Dir = "../.."
	p.cmd.Env = append(append(os.Environ(), isolated()...), env...)
	p.cmd.Stdout = &p.out
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.errLines <- sc.Text()
		}
		close(p.errLines)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

func (p *proc) waitStderr(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, more := <-p.errLines:
			if !more {
				t.Fatalf("exited before printing %q", want)
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %q on stderr", want)
		}
	}
}

func (p *proc) wait(t *testing.T) string {
	t.Helper()
	go func() {
		for range p.errLines {
		}
	}()
	select {
	case err := <-p.done:
		require.NoError(t, err, p.out.String())
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit")
	}
	return p.out.String()
}

// dev runs both embedded brokers for other commands until interrupted.
func TestDevServesOtherCommands(t *testing.T) {
	p := exec.Command(bin, "dev", "--nats-port", "0", "--kafka-port", "0")
	stdout, err := p.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, p.Start())
	t.Cleanup(func() { _ = p.Process.Kill() })
	urls := map[string]string{}
	sc := bufio.NewScanner(stdout)
	re := regexp.MustCompile(`export AMPYBUS_URL=((nats|kafka)://\S+)`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			urls[m[2]] = m[1]
		}
		if strings.HasPrefix(sc.Text(), "ready") {
			break
		}
	}
	require.Len(t, urls, 2)
	for _, u := range urls {
		ok(t, []string{"AMPYBUS_URL=" + u}, "pub-empty", "--topic", "ampy.dev.bars.v1.XNAS.AAPL")
		out := ok(t, []string{"AMPYBUS_URL=" + u}, "consume", "--topic", "ampy.dev.bars.v1.XNAS.AAPL")
		assert.Contains(t, out, "── ampy.dev.bars.v1.XNAS.AAPL")
	}
	require.NoError(t, p.Process.Signal(syscall.SIGINT))
	require.NoError(t, p.Wait(), "dev exits 0 on Ctrl-C")
}

// dev --cluster 3 runs a JetStream cluster: orders get the contract's three
// replicas, and the other commands work against it.
func TestDevCluster(t *testing.T) {
	p := exec.Command(bin, "dev", "--nats", "--cluster", "3", "--nats-port", "0")
	stdout, err := p.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, p.Start())
	t.Cleanup(func() { _ = p.Process.Kill() })
	var u string
	sc := bufio.NewScanner(stdout)
	re := regexp.MustCompile(`export AMPYBUS_URL=(nats://\S+)`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			u = m[1]
		}
		if strings.HasPrefix(sc.Text(), "ready") {
			break
		}
	}
	require.Equal(t, 3, strings.Count(u, "nats://"), "three servers in %s", u)
	env := []string{"AMPYBUS_URL=" + u}
	ok(t, env, "ensure-topic", "--topic", "ampy.dev.orders.v1")
	out := ok(t, env, "describe-topic", "--topic", "ampy.dev.orders.v1")
	assert.Contains(t, out, "6 partitions, 3 replica(s)")
	assert.Regexp(t, `AMPY_DEV_ORDERS_V1: 0 message\(s\), 6 partition\(s\), 3 replica\(s\)`, out)
	ok(t, env, "pub-empty", "--topic", "ampy.dev.bars.v1.XNAS.AAPL")
	assert.Contains(t, ok(t, env, "consume", "--topic", "ampy.dev.bars.v1.XNAS.AAPL"), "── ampy.dev.bars.v1.XNAS.AAPL")
	require.NoError(t, p.Process.Signal(syscall.SIGINT))
	require.NoError(t, p.Wait(), "dev exits 0 on Ctrl-C")
}

// The shipped fixtures validate through the CLI, as the README says.
func TestValidateShippedFixtures(t *testing.T) {
	r := ctl(t, nil, "validate-fixture", "--dir", "fixtures")
	require.Equal(t, 0, r.code, r.stdout)
	assert.Contains(t, r.stderr, "59 fixture(s) valid")
	ok(t, nil, "fixtures", "--out", "fixtures", "--check")
}

// make demo: the seed's §19 narrative, on either transport.
func TestDemoCommand(t *testing.T) {
	for _, args := range [][]string{{"demo"}, {"demo", "--transport", "kafka"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			out := ok(t, nil, args...)
			assert.Contains(t, out, "demo complete")
			assert.Regexp(t, `(?m)^orders\s+3\s+3\s+0\s+1\s+0\s+0\s`, out)
		})
	}
}

// demo --metrics-addr serves /metrics while it runs and, with --linger,
// after its summary: scraped over HTTP, it has the seed's eight metrics
// with the values the demo's story implies, and the summary agrees.
func TestDemoServesMetrics(t *testing.T) {
	p := start(t, nil, "demo", "--metrics-addr", "127.0.0.1:0", "--linger", "60s")
	line := p.waitStderr(t, "metrics on http://")
	url := strings.TrimSpace(line[strings.Index(line, "http://"):])
	scrape := func() string {
		res, err := http.Get(url)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return string(b)
	}
	// During the run the subscriptions report their lag; the summary is
	// followed by the linger line.
	sawLag := false
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for lingering := false; !lingering; {
		select {
		case l, more := <-p.errLines:
			require.True(t, more, "the demo exited before lingering")
			lingering = strings.Contains(l, "serving metrics for 1m0s more")
		case <-tick.C:
			sawLag = sawLag || strings.Contains(scrape(), "bus_consumer_lag{consumer=")
		case <-deadline:
			t.Fatal("the demo did not finish within 60s")
		}
	}
	assert.True(t, sawLag, "bus_consumer_lag while the demo ran")
	text := scrape()
	for _, want := range []string{
		`bus_produced_total{producer="yfinance-go@ingest-1",topic="ampy.dev.bars.v1.{mic}.{symbol}"} 4`,
		`bus_consumed_total{consumer="ampy-model-server",topic="ampy.dev.bars.v1.{mic}.{symbol}"} 4`,
		`bus_delivery_latency_ms_count{topic="ampy.dev.bars.v1.{mic}.{symbol}"} 4`,
		`bus_batch_size_bytes_count{topic="ampy.dev.bars.v1.{mic}.{symbol}"} 4`,
		`bus_dlq_total{reason="decode_error",topic="ampy.dev.bars.v1.{mic}.{symbol}"} 1`,
		`bus_decode_fail_total{reason="decode_error",topic="ampy.dev.bars.v1.{mic}.{symbol}"} 1`,
		`bus_dlq_total{reason="handler",topic="ampy.dev.orders.v1.requests"} 1`,
		`bus_retry_total{reason="handler",topic="ampy.dev.fills.v1.events"} 1`,
		`bus_produced_total{producer="ampy-ops@ops-1",topic="ampy.dev.orders.v1.requests"} 1`,
		`messaging_client_sent_messages_total{`,
		`messaging_process_duration_seconds_bucket{`,
	} {
		assert.True(t, strings.Contains(text, want), "/metrics lacks %s", want)
	}
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	out := p.wait(t)
	assert.Regexp(t, `(?m)^bars\s+4\s+4\s+0\s+1\s+1\s+0\s`, out, "the summary is read from the same metrics")
}

// The README's ampybusctl block runs as written, on each transport, with
// only AMPYBUS_URL changed.
func TestReadmeCommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	cmds := readmeCommands(t, string(readme))
	require.GreaterOrEqual(t, len(cmds), 15)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	for name, url := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			work := t.TempDir()
			require.NoError(t, os.Symlink(filepath.Join(root, "fixtures"), filepath.Join(work, "fixtures")))
			for _, args := range cmds {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				cmd := exec.CommandContext(ctx, bin, args...)
				cmd.Dir = work
				cmd.Env = append(append(os.Environ(), isolated()...), "AMPYBUS_URL="+url)
				out, err := cmd.CombinedOutput()
				cancel()
				require.NoError(t, err, "ampybusctl %s\n%s", strings.Join(args, " "), out)
			}
			dumped, _ := filepath.Glob(filepath.Join(work, "dlq_dump", "*.json"))
			require.Len(t, dumped, 1, "consume --settle dead-lettered the poison message, and only it")
			data, err := os.ReadFile(dumped[0])
			require.NoError(t, err)
			assert.Contains(t, string(data), `"dlq_reason": "decode_error`)
			assert.Contains(t, string(data), "co_poison_001")
		})
	}
}

// readmeCommands returns the argument lists of the ampybusctl lines in the
// README's tested block, continuation lines joined and quotes removed.
func readmeCommands(t *testing.T, readme string) [][]string {
	t.Helper()
	i := strings.Index(readme, "<!-- ampybusctl commands: tested -->")
	require.GreaterOrEqual(t, i, 0, "README has no tested ampybusctl block")
	block := readme[i:]
	block = block[strings.Index(block, "```sh\n")+6:]
	block = block[:strings.Index(block, "```")]
	block = strings.ReplaceAll(block, "\\\n", " ")
	var cmds [][]string
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "ampybusctl ") {
			continue
		}
		args := shellWords(t, line)
		cmds = append(cmds, args[1:])
	}
	return cmds
}

// shellWords splits a command line as sh would for the quoting the README uses.
func shellWords(t *testing.T, s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	require.Zero(t, quote, "unbalanced quotes in %q", s)
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// The seed's NATS auth flags reach the connection: a server that requires a
// user and password accepts --user/--pass and refuses without them.
func TestNATSAuthFlags(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "ampy", Password: "s3cret"})
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(5*time.Second))
	t.Cleanup(s.Shutdown)
	args := []string{"pub-empty", "--bus", s.ClientURL(), "--topic", "ampy.dev.bars.v1.XNAS.AAPL", "--provision"}
	r := ctl(t, nil, args...)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, strings.ToLower(r.stderr), "authorization violation")
	ok(t, nil, append(args, "--user", "ampy", "--pass", "s3cret")...)
	ok(t, []string{"NATS_USER=ampy", "NATS_PASS=s3cret"}, args...)
}

func TestVersion(t *testing.T) {
	assert.Equal(t, "ampybusctl (devel) (runtime "+ampybus.Version+")\n", ok(t, nil, "version"))
}

// ampybusctl serves another team's bus: its contract and protos read at run
// time (--contract, --proto_path, or the environment), every command on
// both transports, the built binary run as a subprocess.
func TestForeignContract(t *testing.T) {
	contractFile, err := filepath.Abs("testdata/foreign/contract.yaml")
	require.NoError(t, err)
	protos, err := filepath.Abs("../ampybus-gen/testdata/service/proto")
	require.NoError(t, err)
	for name, url := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Another team's contract: its streams are provisioned as it goes.
			env := []string{"AMPYBUS_URL=" + url, "AMPYBUS_CONTRACT=" + contractFile, "AMPYBUS_PROTO_PATH=" + protos, "AMPYBUS_PROVISION=1"}
			who := []string{"--producer", "cx-feed@host-1", "--source", "cx-feed"}

			out := ok(t, env, "list-topics", "--env", "dev")
			assert.Regexp(t, `(?m)^dev\s+cx\.dev\.trades\.v1\s+no`, out)
			assert.Regexp(t, `(?m)^dev\s+cx\.dev\.trades\.v2\s+no`, out)
			ok(t, env, "ensure-topic", "--topic", "cx.dev.trades.v2")
			out = ok(t, env, "describe-topic", "--topic", "cx.dev.trades.v2")
			assert.Contains(t, out, "carries cx.market.v2.Trade 2.0.0")

			out = ok(t, env, append([]string{"pub", "--topic", "cx.dev.trades.v1.XCX.ABC", "--payload", `{"venue":"XCX","symbol":"ABC","trade_id":"t-1","seq":"7","price_e4":"1234500"}`}, who...)...)
			assert.Contains(t, out, "partition_key XCX.ABC")
			out = ok(t, env, append([]string{"pub-empty", "--topic", "cx.dev.trades.v2.XCX.ABC", "--pk", "XCX.ABC"}, who...)...)
			assert.Regexp(t, `^published cx.dev.trades.v2.XCX.ABC .* partition_key XCX.ABC`, out)
			out = ok(t, env, "consume", "--topic", "cx.dev.trades.v1.XCX.ABC", "--max", "10", "--decode")
			assert.Contains(t, out, "schema_fqdn         cx.market.v1.Trade")
			assert.Contains(t, out, `"trade_id": "t-1"`)
			out = ok(t, env, "sub", "--subject", "cx.dev.trades.*.>", "--from", "first", "--max", "2")
			assert.Contains(t, out, "── cx.dev.trades.v1.XCX.ABC")
			assert.Contains(t, out, "── cx.dev.trades.v2.XCX.ABC")

			// A poison message goes to cx's DLQ through a consumer of the
			// run-time catalog; the CLI inspects and redrives it.
			out = ok(t, env, append([]string{"poison", "--topic", "cx.dev.trades.v1.XCX.ABC", "--pk", "XCX.ABC"}, who...)...)
			assert.Contains(t, out, "cx.dev.dlq.v1.trades")
			deadLetterForeign(t, url, contractFile, protos)
			dump := t.TempDir()
			out = ok(t, env, "dlq-inspect", "--subject", "cx.dev.dlq.v1.>", "--max", "10", "--decode", "--outdir", dump)
			assert.Contains(t, out, "dlq_original_topic  cx.dev.trades.v1.XCX.ABC")
			dumped, _ := filepath.Glob(filepath.Join(dump, "*.json"))
			require.Len(t, dumped, 1)
			r := ctl(t, []string{"AMPYBUS_CONTRACT=" + contractFile, "AMPYBUS_PROTO_PATH=" + protos}, "validate-fixture", "--file", dumped[0])
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stdout, "does not decode as cx.market.v1.Trade")
			out = ok(t, env, "dlq-redrive", "--subject", "cx.dev.dlq.v1.>", "--max", "5")
			assert.Regexp(t, `redriven cx.dev.dlq.v1.trades seq \d+ → cx.dev.trades.v1.XCX.ABC seq \d+`, out)

			out = ok(t, env, append([]string{"bench-pub", "--topic", "cx.dev.trades.v1.XCX.ABC", "--pk", "XCX.ABC", "--count", "50", "--concurrency", "2", "--size", "64"}, who...)...)
			assert.Contains(t, out, "Published 50 messages")

			// replay counts its window; this contract has no control topic to post on.
			from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
			out = ok(t, env, "replay", "--subject", "cx.dev.trades.v1.>", "--start", from, "--end", to, "--reason", "gap", "--dry-run")
			assert.Contains(t, out, "on 1 key(s)")
			r = ctl(t, env, "replay", "--subject", "cx.dev.trades.v1.>", "--start", from, "--end", to, "--reason", "gap")
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stderr, "the contract has no control subtopic carrying ampy.control.v1.ReplayRequest")

			// The flags do what the environment does; the built-in contract
			// knows nothing of cx.
			r = ctl(t, []string{"AMPYBUS_URL=" + url}, "describe-topic", "--topic", "cx.dev.trades.v1", "--contract", contractFile, "--proto_path", protos)
			assert.Equal(t, 0, r.code, r.stderr)
			r = ctl(t, []string{"AMPYBUS_URL=" + url}, "describe-topic", "--topic", "cx.dev.trades.v2", "--contract", contractFile, "--descriptor_set_in", descriptorSet(t, protos))
			assert.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stdout, "carries cx.market.v2.Trade 2.0.0", "from a descriptor set, as buf or protoc write it")
			r = ctl(t, []string{"AMPYBUS_URL=" + url}, "describe-topic", "--topic", "cx.dev.trades.v1")
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stderr, `subject "cx.dev.trades.v1.>" is outside the contract`)

			// fixtures writes a skeleton per typed subtopic; they validate and publish.
			fx := t.TempDir()
			out = ok(t, env, "fixtures", "--out", fx)
			assert.Contains(t, out, "wrote 2 skeleton fixtures")
			assert.Contains(t, ok(t, env, "fixtures", "--out", fx, "--check"), "are current")
			r = ctl(t, env, "validate-fixture", "--dir", fx)
			assert.Equal(t, 0, r.code, r.stdout)
			assert.Contains(t, r.stdout, "cx.dev.trades.v2.VENUE.SYMBOL")
			out = ok(t, env, "pub", "--fixture", filepath.Join(fx, "trades", "v1", "skeleton.json"))
			assert.Contains(t, out, "published cx.dev.trades.v1.VENUE.SYMBOL")
		})
	}
}

// deadLetterForeign runs a consumer of the foreign contract's v1 trades,
// read at run time, until it has dead-lettered one message.
func deadLetterForeign(t *testing.T, url, contractFile, protos string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schemas, err := protoset.Load(ctx, protoset.Options{ProtoPaths: []string{protos}})
	require.NoError(t, err)
	c, err := contract.Load(contractFile, schemas)
	require.NoError(t, err)
	tp, err := dynamic.Catalog(c).Resolve("cx.dev.trades.v1.XCX.ABC")
	require.NoError(t, err)
	// The team's consumer owns its domains, dead-letter queue included.
	b, err := ampybus.Open(ctx, url, ampybus.WithEnv("dev"), ampybus.WithLogger(slog.New(slog.DiscardHandler)), ampybus.WithProvisioning())
	require.NoError(t, err)
	defer b.Close()
	sub, err := tp.Route.Subscribe(ctx, b, "*.*", func(context.Context, *ampybus.AnyMessage) error { return nil },
		ampybus.Durable("cx-consumer"), ampybus.DeliverAll())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sub.Stats().DeadLettered == 1 }, 20*time.Second, 10*time.Millisecond, "%+v", sub.Stats())
	require.NoError(t, sub.Stop())
}

// descriptorSet writes the protos under dir as a FileDescriptorSet with
// their imports, as buf build -o does.
func descriptorSet(t *testing.T, dir string) string {
	t.Helper()
	reg, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{dir}})
	require.NoError(t, err)
	var set descriptorpb.FileDescriptorSet
	reg.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
		return true
	})
	data, err := proto.Marshal(&set)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "schemas.binpb")
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

// acl prints what the contract's services may do on each broker, and
// apply creates the Kafka ACLs on the cluster.
func TestACL(t *testing.T) {
	out := ok(t, nil, "acl", "--env", "prod", "--service", "ampy-oms")
	assert.Contains(t, out, `user: "ampy-oms"`)
	assert.Contains(t, out, `"*.ampy.prod.orders.v1.requests"`)
	assert.Contains(t, out, "User:ampy-oms allow write on topic ampy.prod.orders.v1 (literal)")
	assert.NotContains(t, out, "User:broker-alpaca")
	r := ctl(t, nil, "acl", "--env", "qa")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "the contract's envs are [dev paper prod]")

	k, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	defer k.Shutdown()
	out = ok(t, nil, "acl", "apply", "--bus", k.URL(), "--env", "prod")
	assert.Regexp(t, `^applied \d+ ACLs for 12 service\(s\) in env prod`, out)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	described, err := kadm.NewClient(cl).DescribeACLs(ctx, kadm.NewACLs().Allow("User:ampy-oms").AllowHosts("*").Topics("ampy.prod.orders.v1").
		Operations(kadm.OpWrite).ResourcePatternType(kadm.ACLPatternLiteral))
	require.NoError(t, err)
	require.Len(t, described, 1)
	require.NoError(t, described[0].Err)
	assert.Len(t, described[0].Described, 1, "the OMS may write its orders topic")
}

// audit reconstructs the session the demo played, from another process.
func TestAuditCommand(t *testing.T) {
	url := brokers(t)["nats"]
	start := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)
	ok(t, nil, "demo", "--bus", url)
	end := time.Now().UTC().Add(2 * time.Second).Format(time.RFC3339Nano)
	out := ok(t, nil, "audit", "--bus", url, "--env", "dev", "--start", start, "--end", end)
	assert.Contains(t, out, "order co_demo_001  account ALPACA-LIVE-01  AAPL.XNAS  filled 100.0000")
	assert.Contains(t, out, "redriven from ampy.dev.dlq.v1.orders")
	assert.Contains(t, out, "2 order(s), 2 position(s): consistent")
	out = ok(t, nil, "audit", "--bus", url, "--env", "dev", "--start", start, "--end", end, "--account", "ALPACA-LIVE-01", "--json")
	var r struct {
		Orders []struct {
			ClientOrderID string `json:"client_order_id"`
		} `json:"orders"`
		Consistent bool `json:"consistent"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.True(t, r.Consistent)
	require.Len(t, r.Orders, 1)
	assert.Equal(t, "co_demo_001", r.Orders[0].ClientOrderID)
}

// bench runs typed and raw against a broker it starts as a child process,
// so the figures are the client's alone, and stops the child when done.
func TestBenchCompareWithBrokerChild(t *testing.T) {
	for _, kind := range []string{"nats", "kafka"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			profiles := t.TempDir()
			out := ok(t, nil, "bench", "--transport", kind, "--compare", "--rounds", "1", "--messages", "2000", "--json", "--profile", profiles)
			var rep struct {
				Settings struct {
					Mode      string `json:"mode"`
					Transport string `json:"transport"`
					Messages  int    `json:"messages"`
				} `json:"settings"`
				Broker struct {
					URL   string `json:"url"`
					Where string `json:"where"`
					PID   int    `json:"pid"`
				} `json:"broker"`
				Runs []struct {
					Client      string                           `json:"client"`
					Published   int                              `json:"published"`
					Consumed    int                              `json:"consumed"`
					Missing     int                              `json:"missing"`
					Duplicates  int                              `json:"duplicates"`
					PublishRate float64                          `json:"publish_msgs_per_sec"`
					ConsumeRate float64                          `json:"consume_msgs_per_sec"`
					CPU         float64                          `json:"cpu_us_per_msg"`
					BrokerCPU   float64                          `json:"broker_cpu_us_per_msg"`
					Allocs      float64                          `json:"allocs_per_msg"`
					Goroutines  int                              `json:"peak_goroutines"`
					PeakHeap    uint64                           `json:"peak_heap_inuse_bytes"`
					Latency     *struct{ P50, P99, Max float64 } `json:"latency_us"`
					Profiles    []string                         `json:"profiles"`
				} `json:"runs"`
				Summary []struct {
					Name   string                    `json:"name"`
					Better string                    `json:"better"`
					Ratio  float64                   `json:"ratio_typed_over_raw"`
					Typed  *struct{ Median float64 } `json:"typed"`
					Raw    *struct{ Median float64 } `json:"raw"`
				} `json:"summary"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
			assert.Equal(t, "e2e", rep.Settings.Mode)
			assert.Equal(t, kind, rep.Settings.Transport)
			assert.Equal(t, "child process", rep.Broker.Where)
			assert.True(t, strings.HasPrefix(rep.Broker.URL, kind+"://"), rep.Broker.URL)
			require.Positive(t, rep.Broker.PID)
			require.Len(t, rep.Runs, 2)
			clients := map[string]bool{}
			for _, r := range rep.Runs {
				clients[r.Client] = true
				assert.Equal(t, 2000, r.Published, r.Client)
				assert.Equal(t, 2000, r.Consumed, r.Client)
				assert.Zero(t, r.Missing+r.Duplicates, r.Client)
				assert.Positive(t, r.PublishRate, r.Client)
				assert.Positive(t, r.ConsumeRate, r.Client)
				assert.Positive(t, r.CPU, r.Client)
				if kind == "nats" && runtime.GOOS == "linux" {
					// kfake's share of 2,000 messages can be under /proc's 10 ms.
					assert.Positive(t, r.BrokerCPU, "%s: the broker child's CPU is read from /proc", r.Client)
				}
				assert.Positive(t, r.Allocs, r.Client)
				assert.Positive(t, r.Goroutines, r.Client)
				assert.Positive(t, r.PeakHeap, r.Client)
				require.NotNil(t, r.Latency, r.Client)
				assert.Positive(t, r.Latency.P50, r.Client)
				assert.LessOrEqual(t, r.Latency.P50, r.Latency.P99, r.Client)
				assert.LessOrEqual(t, r.Latency.P99, r.Latency.Max, r.Client)
				// --profile: the client's and the broker child's CPU profiles,
				// and the client's allocations at both ends of the window.
				require.Len(t, r.Profiles, 4, r.Client)
				for i, p := range []struct{ suffix, sampled string }{
					{".client.pprof", "nanoseconds"}, {".allocs-base.pprof", "alloc_objects"},
					{".allocs.pprof", "alloc_objects"}, {".broker.pprof", "nanoseconds"},
				} {
					f := r.Profiles[i]
					assert.Equal(t, profiles, filepath.Dir(f))
					assert.True(t, strings.HasPrefix(filepath.Base(f), kind+"-e2e-"+r.Client+"-") && strings.HasSuffix(f, p.suffix), f)
					assert.Contains(t, pprofStrings(t, f), p.sampled, "%s samples %s", f, p.sampled)
				}
			}
			assert.Equal(t, map[string]bool{"typed": true, "raw": true}, clients)
			names := map[string]bool{}
			for _, f := range rep.Summary {
				names[f.Name] = true
				require.NotNil(t, f.Typed, f.Name)
				require.NotNil(t, f.Raw, f.Name)
				assert.Contains(t, []string{"higher", "lower"}, f.Better, f.Name)
			}
			for _, n := range []string{"publish msgs/s", "consume msgs/s", "latency p99 ms", "CPU µs/msg", "allocs/msg"} {
				assert.True(t, names[n], "summary has %s", n)
			}
			// The child was stopped and reaped before the command exited.
			assert.ErrorIs(t, syscall.Kill(rep.Broker.PID, 0), syscall.ESRCH, "broker child %d still running", rep.Broker.PID)
		})
	}
}

// pprofStrings is a profile's decompressed bytes: a gzipped protobuf
// whose string table names the sample types.
func pprofStrings(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err, "%s is not gzipped", path)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return string(b)
}

// The upstream README's Kafka commands run as written: kafkabusctl,
// kafkainspect and kafkapoison as first arguments, and as the program's
// name (a symlink), against a Kafka broker given by --brokers.
func TestUpstreamCommandsRunAsWritten(t *testing.T) {
	u, err := url.Parse(brokers(t)["kafka"])
	require.NoError(t, err)
	hostport := u.Host
	run := func(args ...string) result {
		t.Helper()
		r := ctl(t, nil, args...)
		require.Equal(t, 0, r.code, "%s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
		return r
	}
	r := run("kafkabusctl", "ensure-topic", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--partitions", "3")
	assert.Contains(t, r.stderr, "--partitions 3 ignored: contract.yaml gives bars 12 partitions")

	sub := start(t, nil, "kafkabusctl", "sub", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--group", "cli-consumer")
	sub.waitStderr(t, "listening on ampy.prod.bars.v1.XNAS.AAPL")
	r = run("kafkabusctl", "pub-empty", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL",
		"--producer", "yfinance-go@ingest-1", "--source", "yfinance-go", "--pk", "XNAS.AAPL")
	assert.Contains(t, r.stdout, "published ampy.prod.bars.v1.XNAS.AAPL")
	require.Eventually(t, func() bool { return strings.Contains(sub.stdout(), "── ampy.prod.bars.v1.XNAS.AAPL") }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, sub.cmd.Process.Signal(os.Interrupt))
	sub.wait(t)

	r = run("kafkainspect", "list-topics", "--brokers", hostport)
	assert.Regexp(t, `(?m)^prod\s+ampy\.prod\.bars\.v1\s+yes`, r.stdout)
	r = run("kafkainspect", "describe-topic", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL")
	assert.Contains(t, r.stdout, "partition_key {mic}.{symbol}")
	r = run("kafkainspect", "consume", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--max", "10", "--decode")
	assert.Contains(t, r.stderr, "read 1 message(s) from ampy.prod.bars.v1.XNAS.AAPL")

	// kafkapoison as the program's own name.
	dir := t.TempDir()
	require.NoError(t, os.Symlink(bin, filepath.Join(dir, "kafkapoison")))
	cmd := exec.Command(filepath.Join(dir, "kafkapoison"), "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL",
		"--producer", "poison@cli", "--source", "poison-test", "--pk", "XNAS.AAPL")
	cmd.Env = append(os.Environ(), isolated()...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "will dead-letter it to ampy.prod.dlq.v1.bars")

	// kafkainspect without a command consumes.
	r = run("kafkainspect", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--group", "inspector", "--max", "5")
	assert.Contains(t, r.stderr, "read 2 message(s) from ampy.prod.bars.v1.XNAS.AAPL, 1 breaking the contract")
}

// stdout is what the command printed so far.
func (p *proc) stdout() string { return p.out.String() }
