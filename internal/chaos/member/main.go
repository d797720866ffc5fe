// Command member is one instance of a consumer group for the fault tests in
// internal/chaos: it consumes position snapshots in a durable group with the
// group's persistent dedupe store and appends every effect it applies to a
// log, one write per line, so the lines survive a SIGKILL.
//
// Log lines (times are wall-clock nanoseconds; every process runs on one
// machine):
//
//	A <unix_ns> <partition_key> <seq> <message_id>   an effect applied
//	M <unix_ns> <message_id>                          its dedupe mark stored
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

func main() {
	busURL := flag.String("bus", "", "bus URL")
	group := flag.String("group", "chaos", "consumer group")
	logPath := flag.String("log", "", "effect log to append to")
	concurrency := flag.Int("concurrency", 4, "keys handled at once")
	flag.Parse()
	if err := run(*busURL, *group, *logPath, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(1)
	}
}

// effects is the append-only log.
type effects struct {
	mu sync.Mutex
	f  *os.File
}

func (e *effects) write(format string, args ...any) error {
	line := fmt.Sprintf(format, args...)
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.f.WriteString(line)
	return err
}

// marked logs each mark once the store has it.
type marked struct {
	dedupe.Store
	log *effects
}

func (m *marked) Mark(ctx context.Context, key string, ttl time.Duration) error {
	if err := m.Store.Mark(ctx, key, ttl); err != nil {
		return err
	}
	return m.log.write("M %d %s\n", time.Now().UnixNano(), key)
}

// Sync passes the store's catch-up through (kafkabinding.TopicStore).
func (m *marked) Sync(ctx context.Context) error {
	if s, ok := m.Store.(dedupe.Syncer); ok {
		return s.Sync(ctx)
	}
	return nil
}

// level is the log level: AMPYBUS_LOG=debug shows every partition move.
func level() slog.Level {
	if os.Getenv("AMPYBUS_LOG") == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func run(busURL, group, logPath string, concurrency int) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	log := &effects{f: f}
	// Members own the test's domains: each provisions what it uses.
	b, err := ampybus.Open(ctx, busURL, ampybus.WithEnv("dev"), ampybus.WithProducer(fmt.Sprintf("member@%d", os.Getpid()), "chaos"), ampybus.WithProvisioning(),
		ampybus.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level()}))))
	if err != nil {
		return err
	}
	defer b.Close()
	var store dedupe.Store
	switch t := b.Transport().(type) {
	case *natsbinding.Transport:
		store, err = natsbinding.NewKVStore(ctx, t, "chaos_dedupe", time.Hour, positions.Domain.Replicas)
	case *kafkabinding.Transport:
		var ts *kafkabinding.TopicStore
		ts, err = kafkabinding.NewTopicStore(ctx, t, "ampy_bus.chaos.dedupe", time.Hour, positions.Domain.Replicas)
		if ts != nil {
			defer ts.Close()
		}
		store = ts
	}
	if err != nil {
		return err
	}
	sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		// Effects are keyed by message id; the mark that follows uses the
		// engine's own key, which ends with the message id.
		return log.write("A %d %s %d %s\n", time.Now().UnixNano(), m.Headers.PartitionKey, m.Payload.GetQuantity().GetScaled(), m.Headers.MessageID)
	}, ampybus.Durable(group), ampybus.DeliverAll(), ampybus.Concurrency(concurrency),
		ampybus.Dedupe(&marked{Store: store, log: log}, time.Hour))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	select {
	case <-ctx.Done():
	case <-sub.Done():
		return sub.Err()
	}
	return sub.Stop()
}
