package loadbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/embedded"
)

// ReadyLine starts the line `ampybusctl dev --supervised` prints once its
// brokers serve and their streams exist, followed by their URLs.
const ReadyLine = "ampybus-dev-ready "

// Broker is an embedded broker the benchmark started, in a child process
// (so its CPU and memory are not counted as the client's) or in this one.
type Broker struct {
	// URL is where clients reach it: nats://… or kafka://….
	URL string
	// Where says where it runs, for the report: "child process" or "in process".
	Where string
	// PID is the child's process id; 0 in process.
	PID int

	stop func() error
	// stdin carries commands to the child (Profile); profiled its answers.
	stdin    io.Writer
	profiled chan string
}

// CPU is the child broker's CPU time so far; an error in process (its work
// is the client's) or where it cannot be read.
func (b *Broker) CPU() (time.Duration, error) {
	if b.PID == 0 {
		return 0, errors.New("the broker runs in this process: its CPU is counted as the client's")
	}
	return childCPU(b.PID)
}

// Close stops the broker and, for a child, waits until it has exited.
func (b *Broker) Close() error { return b.stop() }

// StartInProcess starts an embedded nats or kafka broker in this process:
// for tests, and where the executable cannot be run again. Its work is then
// counted in this process's CPU and allocations.
func StartInProcess(kind string) (*Broker, error) {
	switch kind {
	case "nats":
		n, err := embedded.StartNATS(embedded.NATSOptions{})
		if err != nil {
			return nil, fmt.Errorf("start NATS: %w", err)
		}
		return &Broker{URL: n.URL(), Where: "in process", stop: func() error { n.Shutdown(); return nil }}, nil
	case "kafka":
		k, err := embedded.StartKafka(embedded.KafkaOptions{})
		if err != nil {
			return nil, fmt.Errorf("start Kafka: %w", err)
		}
		return &Broker{URL: k.URL(), Where: "in process", stop: func() error { k.Shutdown(); return nil }}, nil
	}
	return nil, fmt.Errorf("broker %q: use nats or kafka", kind)
}

// StartChild runs exe with args (ampybusctl dev --nats --nats-port 0
// --supervised) and waits for its ReadyLine. The child stops when its stdin
// closes, so it does not outlive this process even if this one is killed;
// Close closes it and waits, killing the child after 10 s.
func StartChild(ctx context.Context, exe string, args ...string) (*Broker, error) {
	cmd := exec.Command(exe, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	exited := make(chan error, 1)
	urls := make(chan string, 1)
	profiled := make(chan string, 1)
	go func() {
		// Every line is read, so the child's writes never block.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), ReadyLine); ok {
				urls <- rest
			} else if rest, ok := strings.CutPrefix(sc.Text(), ProfiledLine); ok {
				select {
				case profiled <- rest:
				default: // an answer nobody waits for any more
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			_ = stdin.Close()
			select {
			case err := <-exited:
				stopErr = err
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				stopErr = fmt.Errorf("broker child %d did not stop within 10s; killed: %v", cmd.Process.Pid, <-exited)
			}
		})
		return stopErr
	}
	fail := func(err error) (*Broker, error) {
		_ = stop()
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	wait, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	select {
	case line := <-urls:
		u, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if u == "" {
			return fail(errors.New("the broker child printed no URL"))
		}
		return &Broker{URL: u, Where: "child process", PID: cmd.Process.Pid, stop: stop, stdin: stdin, profiled: profiled}, nil
	case err := <-exited:
		exited <- err // for stop
		return fail(fmt.Errorf("the broker child exited before it was ready: %v", err))
	case <-wait.Done():
		return fail(fmt.Errorf("the broker child was not ready: %w", wait.Err()))
	}
}

// lockedBuffer is a bytes.Buffer written by exec's copier and read here.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
