package ampybus_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/ticks"
	controlv1 "github.com/ampyfin/ampy-bus/proto/ampy/control/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

func TestReplayFor(t *testing.T) {
	b := open(t, "embedded://nats", ampybus.WithEnv("prod"))
	start, end := time.Date(2025, 1, 1, 9, 30, 0, 0, time.UTC), time.Date(2025, 1, 1, 16, 0, 0, 0, time.UTC)
	req := func(env, domain, version, subject string) *controlv1.ReplayRequest {
		return &controlv1.ReplayRequest{RequestId: "r1", Env: env, Domain: domain, Version: version, Subject: subject,
			PartitionKey: "XNAS.AAPL", Start: timestamppb.New(start), End: timestamppb.New(end)}
	}
	for _, tc := range []struct {
		name string
		spec *ampybus.SubtopicSpec
		req  *controlv1.ReplayRequest
		want bool
	}{
		{"whole domain", bars.Spec, req("prod", "bars", "v1", ""), true},
		{"any version", bars.Spec, req("prod", "bars", "", ""), true},
		{"narrowed subject", bars.Spec, req("prod", "bars", "v1", "ampy.prod.bars.v1.XNAS.>"), true},
		{"exact subject", bars.Spec, req("prod", "bars", "v1", "ampy.prod.bars.v1.XNAS.AAPL"), true},
		{"other env", bars.Spec, req("paper", "bars", "v1", ""), false},
		{"other domain", bars.Spec, req("prod", "ticks", "v1", ""), false},
		{"other version", bars.Spec, req("prod", "bars", "v2", ""), false},
		{"subject of another subtopic", ticks.QuoteSpec, req("prod", "ticks", "v1", "ampy.prod.ticks.v1.trade.>"), false},
		{"subject of this subtopic", ticks.TradeSpec, req("prod", "ticks", "v1", "ampy.prod.ticks.v1.trade.>"), true},
		{"subject too deep", bars.Spec, req("prod", "bars", "v1", "ampy.prod.bars.v1.XNAS.AAPL.X"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, ok := ampybus.ReplayFor(b, tc.spec, tc.req)
			assert.Equal(t, tc.want, ok)
			if ok {
				assert.Equal(t, ampybus.ReplayWindow{Start: start, End: end, Key: "XNAS.AAPL", RequestID: "r1", Subject: tc.req.Subject}, w)
			}
		})
	}
}
