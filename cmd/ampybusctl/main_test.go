package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		{"raw codec without a raw client", []string{"bench", "--raw-vtproto"}, 2, "--raw-vtproto changes the raw client's codec: add --raw or --compare"},
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
