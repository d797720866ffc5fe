// Package ampyprom serves the bus's metrics to Prometheus: an OpenTelemetry
// meter provider whose readings a Prometheus registry exposes on /metrics,
// with the ampyotel hook already built on it. The seed's names come out as
// Prometheus spells them (bus.produced_total → bus_produced_total), the
// semantic-convention ones with their unit suffixes
// (messaging_client_operation_duration_seconds).
package ampyprom

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/ampyfin/ampy-bus/plugin/ampyotel"
)

// Exporter is a Prometheus registry fed by the bus's OpenTelemetry metrics.
type Exporter struct {
	// Registry holds the bus's metrics and the Go runtime's; Gather reads
	// what /metrics serves.
	Registry *prometheus.Registry
	// Hook records into Registry; attach it with ampybus.WithHooks.
	Hook     *ampyotel.Hook
	provider *sdkmetric.MeterProvider
}

// New builds the registry, the meter provider and the hook. Spans go to
// tp when given (nil records metrics only).
func New(tp trace.TracerProvider) (*Exporter, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo(),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	opts := []ampyotel.Option{ampyotel.WithMeterProvider(mp)}
	if tp != nil {
		opts = append(opts, ampyotel.WithTracerProvider(tp))
	} else {
		opts = append(opts, ampyotel.WithoutTraces())
	}
	h, err := ampyotel.New(opts...)
	if err != nil {
		return nil, err
	}
	return &Exporter{Registry: reg, Hook: h, provider: mp}, nil
}

// Handler serves the registry in the Prometheus text format.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.Registry, promhttp.HandlerOpts{Registry: e.Registry})
}

// Shutdown stops the meter provider.
func (e *Exporter) Shutdown(ctx context.Context) error { return e.provider.Shutdown(ctx) }

// Server serves /metrics on one address.
type Server struct {
	srv  *http.Server
	addr string
	done chan error
}

// Serve listens on addr (host:port; port 0 picks a free one) and serves
// /metrics until Close.
func (e *Exporter) Serve(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", e.Handler())
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Close stops the server, letting scrapes in progress finish for a second.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
