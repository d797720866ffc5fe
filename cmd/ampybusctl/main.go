// Command ampybusctl operates an ampy-bus: for now the demo; publish,
// subscribe, DLQ, replay and bench commands build on the same runtime.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/ampyfin/ampy-bus/internal/demo"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: ampybusctl demo [--bus URL]")
		return 2
	}
	switch args[0] {
	case "demo":
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		fs.SetOutput(stderr)
		bus := fs.String("bus", envOr("AMPYBUS_URL", ampybus.DefaultURL), "bus URL: nats://host:4222 or embedded://nats")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if err := demo.Run(ctx, *bus, stdout); err != nil {
			fmt.Fprintln(stderr, "ampybusctl demo:", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "ampybusctl: unknown command %q; try: ampybusctl demo\n", args[0])
		return 2
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
