package conformance

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/fundamentals"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	fundamentalsv1 "github.com/ampyfin/ampy-bus/proto/ampy/fundamentals/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// testRestatements: the seed keys fundamentals by (symbol, mic, period_end,
// source) and says consumers handle restatements. A revised Q2, stated
// before Q3 was but delivered after it, reaches the handler as a
// restatement of Q2, not as a regression behind Q3; a Q2 snapshot older
// than one already handled is still a regression.
func testRestatements(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, fundamentals.Domain))
	pub := fundamentals.NewPublisher(b)
	aapl := fundamentals.MustSubtopic("XNAS", "AAPL")
	day := func(m time.Month, d int) time.Time { return time.Date(2025, m, d, 0, 0, 0, 0, time.UTC) }
	snap := func(periodEnd, asOf time.Time, revenue int64) *fundamentalsv1.FundamentalsSnapshot {
		return &fundamentalsv1.FundamentalsSnapshot{
			Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Source: "sec-edgar", AsOf: timestamppb.New(asOf),
			Lines: []*fundamentalsv1.LineItem{
				{Key: "revenue", Value: dec(revenue, 0), CurrencyCode: "USD", PeriodStart: timestamppb.New(periodEnd.AddDate(0, -3, 1)), PeriodEnd: timestamppb.New(periodEnd)},
				{Key: "net_income", Value: dec(revenue/4, 0), CurrencyCode: "USD", PeriodStart: timestamppb.New(periodEnd.AddDate(0, -3, 1)), PeriodEnd: timestamppb.New(periodEnd)},
			},
		}
	}
	q2, q3 := day(6, 28), day(9, 27)
	for _, m := range []*fundamentalsv1.FundamentalsSnapshot{
		snap(q2, day(8, 1), 94_036),    // Q2 as first filed
		snap(q3, day(10, 31), 102_466), // Q3
		snap(q2, day(10, 15), 94_100),  // Q2 restated, stated before Q3 was filed
		snap(q2, day(7, 30), 93_000),   // a Q2 preliminary older than the filing: a regression
	} {
		_, err := pub.Publish(ctx, aapl, m)
		require.NoError(t, err)
	}

	type seen struct {
		period              string
		revenue             int64
		restated, regressed bool
	}
	var mu sync.Mutex
	var got []seen
	sub, err := fundamentals.Subscribe(ctx, b, fundamentals.All(), func(_ context.Context, m *fundamentals.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, seen{m.Payload.GetLines()[0].GetPeriodEnd().AsTime().Format(time.DateOnly), m.Payload.GetLines()[0].GetValue().GetScaled(), m.Restatement, m.OutOfOrder})
		return nil
	}, ampybus.Durable("ampy-model-server"), ampybus.DeliverAll())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sub.Stats().Handled == 4 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, sub.Stop())
	mu.Lock()
	defer mu.Unlock()
	// Each period's key keeps its order; the two periods' keys interleave freely.
	var q2s, q3s []seen
	for _, g := range got {
		if g.period == "2025-06-28" {
			q2s = append(q2s, g)
		} else {
			q3s = append(q3s, g)
		}
	}
	assert.Equal(t, []seen{{"2025-06-28", 94_036, false, false}, {"2025-06-28", 94_100, true, false}, {"2025-06-28", 93_000, false, true}}, q2s)
	assert.Equal(t, []seen{{"2025-09-27", 102_466, false, false}}, q3s)
	st := sub.Stats()
	assert.Equal(t, uint64(1), st.Restatements)
	assert.Equal(t, uint64(1), st.Regressions)
}
