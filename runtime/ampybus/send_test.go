package ampybus_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/metrics"
	metricsv1 "github.com/ampyfin/ampy-bus/proto/ampy/metrics/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// blackhole is a TCP proxy that can stop passing the server's replies while
// still passing the client's requests: the broker stores what it gets, and
// the client never hears back — an ack lost in the network.
type blackhole struct {
	ln      net.Listener
	target  string
	dropped atomic.Bool
	wg      sync.WaitGroup
}

func newBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &blackhole{ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *blackhole) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(s, c); s.Close() }()
		go func() {
			defer p.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && !p.dropped.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}()
	}
}

func (p *blackhole) url() string { return "nats://" + p.ln.Addr().String() }

// A publish whose acks are lost is retried with the same message id until
// the QoS class gives up (metrics: telemetry, 3s); the error then says the
// message may be stored, and it was: republishing it with the same id is
// recognised by the broker as a duplicate.
func TestUnacknowledgedPublishMayBeStored(t *testing.T) {
	srv := server(t)
	proxy := newBlackhole(t, srv.URL()[len("nats://"):])
	b := open(t, proxy.url(), ampybus.WithProducer("ops@test", "ops"))
	direct := open(t, srv.URL(), ampybus.WithProducer("ops@test", "ops"))
	ctx := testCtx(t)
	st := metrics.MustSubtopic("ops")
	m := &metricsv1.Metric{Name: "orders_open", Value: 3, At: timestamppb.Now()}
	_, err := metrics.NewPublisher(b).Publish(ctx, st, m)
	require.NoError(t, err)

	proxy.dropped.Store(true)
	start := time.Now()
	res, err := metrics.NewPublisher(b).Publish(ctx, st, m)
	took := time.Since(start)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ampybus.ErrMaybeStored), "%v", err)
	assert.True(t, errors.Is(err, ampybus.ErrUnavailable), "%v", err)
	assert.Contains(t, err.Error(), "WithMessageID")
	require.NotEmpty(t, res.MessageID, "the id to republish with")
	assert.Less(t, took, 10*time.Second, "the telemetry class gives up after 3s")
	t.Logf("gave up after %v: %v", took.Round(time.Millisecond), err)

	again, err := metrics.NewPublisher(direct).Publish(ctx, st, m, ampybus.WithMessageID(res.MessageID))
	require.NoError(t, err)
	assert.True(t, again.Duplicate, "the unacknowledged publish had been stored")
}

// A caller's own deadline ends the retries.
func TestPublishRetriesStopAtTheCallersDeadline(t *testing.T) {
	srv := server(t)
	proxy := newBlackhole(t, srv.URL()[len("nats://"):])
	b := open(t, proxy.url(), ampybus.WithProducer("ops@test", "ops"))
	ctx := testCtx(t)
	st := metrics.MustSubtopic("ops")
	_, err := metrics.NewPublisher(b).Publish(ctx, st, &metricsv1.Metric{Name: "x", At: timestamppb.Now()})
	require.NoError(t, err)
	proxy.dropped.Store(true)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = metrics.NewPublisher(b).Publish(short, st, &metricsv1.Metric{Name: "x", At: timestamppb.Now()})
	require.Error(t, err)
	assert.True(t, errors.Is(err, ampybus.ErrMaybeStored), "%v", err)
	assert.Less(t, time.Since(start), 2*time.Second)
}
