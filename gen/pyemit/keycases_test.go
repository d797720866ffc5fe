package pyemit_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/gen/contract"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	corporateactionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/corporate_actions/v1"
	fundamentalsv1 "github.com/ampyfin/ampy-bus/proto/ampy/fundamentals/v1"
	signalsv1 "github.com/ampyfin/ampy-bus/proto/ampy/signals/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// keyTest is a payload on a topic of the shipped contract and the keys (or
// the refusal) every implementation must derive from it.
type keyTest struct {
	name, topic string
	payload     proto.Message
	want        string
}

// keyCases exercise the contract's key rules that go past one singular
// field: binds over every element of a repeated field and through oneof
// members, keys read through repeated fields, optional key fields.
func keyCases() []keyTest {
	sec := func(sym, mic string) *commonv1.SecurityId { return &commonv1.SecurityId{Symbol: sym, Mic: mic} }
	at := func(day int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2025, 6, day, 0, 0, 0, 0, time.UTC))
	}
	bars := func(secs ...*commonv1.SecurityId) *barsv1.BarBatch {
		b := &barsv1.BarBatch{}
		for _, s := range secs {
			b.Bars = append(b.Bars, &barsv1.Bar{Security: s})
		}
		return b
	}
	split := func(s *commonv1.SecurityId) *corporateactionsv1.CorporateAction {
		return &corporateactionsv1.CorporateAction{Action: &corporateactionsv1.CorporateAction_Split{Split: &corporateactionsv1.SplitAction{Security: s}}}
	}
	dividend := func(s *commonv1.SecurityId) *corporateactionsv1.CorporateAction {
		return &corporateactionsv1.CorporateAction{Action: &corporateactionsv1.CorporateAction_Dividend{Dividend: &corporateactionsv1.DividendAction{Security: s}}}
	}
	fund := func(lines ...*fundamentalsv1.LineItem) *fundamentalsv1.FundamentalsSnapshot {
		return &fundamentalsv1.FundamentalsSnapshot{Security: sec("AAPL", "XNAS"), Source: "yfinance", Lines: lines}
	}
	line := func(end *timestamppb.Timestamp) *fundamentalsv1.LineItem {
		return &fundamentalsv1.LineItem{Key: "revenue", PeriodEnd: end}
	}
	signal := func(horizon string) *signalsv1.Signal {
		return &signalsv1.Signal{ModelId: "hyper@2025-09-05", Security: sec("AAPL", "XNAS"), Horizon: horizon}
	}
	const (
		barsTopic = "ampy.prod.bars.v1.XNAS.AAPL"
		caTopic   = "ampy.prod.corporate_actions.v1.XNAS.AAPL"
		fundTopic = "ampy.prod.fundamentals.v1.XNAS.AAPL"
		sigTopic  = "ampy.prod.signals.v1.hyper@2025-09-05"
	)
	return []keyTest{
		{"bars all on the topic's security", barsTopic, bars(sec("AAPL", "XNAS"), sec("AAPL", "XNAS")), "partition=XNAS.AAPL dedupe="},
		{"bars empty batch", barsTopic, bars(), "partition=XNAS.AAPL dedupe="},
		{"bars one bar for another symbol", barsTopic, bars(sec("AAPL", "XNAS"), sec("MSFT", "XNAS")),
			`error: contract violation: payload bars[1].security.symbol "MSFT" does not match subtopic {symbol} "AAPL"`},
		{"bars one bar on another venue", barsTopic, bars(sec("AAPL", "XNYS")),
			`error: contract violation: payload bars[0].security.mic "XNYS" does not match subtopic {mic} "XNAS"`},
		{"bars one bar without a security", barsTopic, bars(sec("AAPL", "XNAS"), nil),
			`error: contract violation: payload bars[1].security.mic "" does not match subtopic {mic} "XNAS"`},
		{"corporate actions, split and dividend on the topic's security", caTopic,
			&corporateactionsv1.CorporateActionBatch{Actions: []*corporateactionsv1.CorporateAction{split(sec("AAPL", "XNAS")), dividend(sec("AAPL", "XNAS"))}},
			"partition=XNAS.AAPL dedupe="},
		{"corporate actions, a dividend for another symbol", caTopic,
			&corporateactionsv1.CorporateActionBatch{Actions: []*corporateactionsv1.CorporateAction{split(sec("AAPL", "XNAS")), dividend(sec("MSFT", "XNAS"))}},
			`error: contract violation: payload actions[1].dividend.security.symbol "MSFT" does not match subtopic {symbol} "AAPL"`},
		{"corporate actions, a split on another venue", caTopic,
			&corporateactionsv1.CorporateActionBatch{Actions: []*corporateactionsv1.CorporateAction{dividend(sec("AAPL", "XNAS")), split(sec("AAPL", "XNYS"))}},
			`error: contract violation: payload actions[1].split.security.mic "XNYS" does not match subtopic {mic} "XNAS"`},
		{"fundamentals of one period", fundTopic, fund(line(at(28)), line(at(28))), "partition=AAPL.XNAS|2025-06-28T00:00:00Z|yfinance dedupe="},
		{"fundamentals of two periods", fundTopic, fund(line(at(28)), line(at(28)), line(at(30))),
			`error: contract violation: partition_key {symbol}.{mic}|{lines.period_end?}|{source} needs one lines.period_end for the whole message, but lines[2].period_end is "2025-06-30T00:00:00Z" and an earlier one "2025-06-28T00:00:00Z"`},
		{"fundamentals without line items", fundTopic, fund(), "partition=AAPL.XNAS||yfinance dedupe="},
		{"fundamentals, a line without period_end", fundTopic, fund(line(nil), line(at(28))), "partition=AAPL.XNAS|2025-06-28T00:00:00Z|yfinance dedupe="},
		{"signal with a horizon", sigTopic, signal("5d"), "partition=hyper@2025-09-05|AAPL.XNAS|5d dedupe="},
		{"signal without a horizon", sigTopic, signal(""), "partition=hyper@2025-09-05|AAPL.XNAS| dedupe="},
	}
}

// keysText derives a payload's keys through a catalog's route for topic, as
// "partition=… dedupe=…" or the error.
func keysText(c *ampybus.Catalog, topic string, p proto.Message) string {
	tp, err := c.Resolve(topic)
	if err != nil {
		return "error: " + err.Error()
	}
	data, err := proto.Marshal(p)
	if err != nil {
		return "error: " + err.Error()
	}
	m := tp.Route.NewPayload()
	if err := proto.Unmarshal(data, m); err != nil {
		return "error: " + err.Error()
	}
	k, err := tp.Route.Keys(tp.Subtopic, m)
	if err != nil {
		return "error: " + err.Error()
	}
	return "partition=" + k.Partition + " dedupe=" + k.Dedupe
}

func shippedContract(t *testing.T) *contract.Contract {
	return load(t, "../../contract.yaml")
}
