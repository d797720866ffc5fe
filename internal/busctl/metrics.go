package busctl

import (
	"context"
	"fmt"
	"time"

	"github.com/ampyfin/ampy-bus/plugin/ampyprom"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/spf13/pflag"
)

// serving is a command's --metrics-addr: the bus's metrics on /metrics
// while the command runs.
type serving struct {
	e    *env
	addr string
	exp  *ampyprom.Exporter
	srv  *ampyprom.Server
}

func (e *env) metricsFlag(fs *pflag.FlagSet) *serving {
	s := &serving{e: e}
	fs.StringVar(&s.addr, "metrics-addr", e.getenv("AMPYBUS_METRICS_ADDR"), "serve Prometheus metrics on HOST:PORT/metrics while running (port 0 picks one; $AMPYBUS_METRICS_ADDR)")
	return s
}

// start builds the exporter and, with --metrics-addr, serves it; it says
// where on stderr, the line a scraper or a test reads.
func (s *serving) start() error {
	exp, err := ampyprom.New(nil)
	if err != nil {
		return err
	}
	s.exp = exp
	if s.addr == "" {
		return nil
	}
	srv, err := exp.Serve(s.addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", s.addr, err)
	}
	s.srv = srv
	fmt.Fprintf(s.e.stderr, "metrics on http://%s/metrics\n", srv.Addr())
	return nil
}

// hooks attaches the exporter to a bus; none without --metrics-addr.
func (s *serving) hooks() []ampybus.Option {
	if s.srv == nil {
		return nil
	}
	return []ampybus.Option{ampybus.WithHooks(s.exp.Hook)}
}

// linger keeps serving for d after the command's work is done, until ctx ends.
func (s *serving) linger(ctx context.Context, d time.Duration) {
	if s.srv == nil || d <= 0 {
		return
	}
	fmt.Fprintf(s.e.stderr, "serving metrics for %s more; Ctrl-C to stop\n", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (s *serving) close() {
	if s.srv != nil {
		_ = s.srv.Close()
	}
	if s.exp != nil {
		_ = s.exp.Shutdown(context.Background())
	}
}
