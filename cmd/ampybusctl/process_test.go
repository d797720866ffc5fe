package main_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Commands that keep running (the dev broker, the demo) run as processes
// the tests read from and stop.

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

// stdout is what the command printed so far.
func (p *proc) stdout() string { return p.out.String() }
