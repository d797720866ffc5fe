// Command ampybusctl operates an ampy-bus on NATS JetStream or Kafka:
// publish, subscribe, DLQ inspect and redrive, replay, bench, fixtures,
// topics, local brokers and the demo. Run `ampybusctl help` for the list.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ampyfin/ampy-bus/internal/busctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(busctl.Main(ctx, busctl.Args(os.Args), os.Stdout, os.Stderr, os.Getenv, isTerminal(os.Stderr)))
}

// isTerminal reports whether f is a character device, where progress lines
// can overwrite themselves.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
