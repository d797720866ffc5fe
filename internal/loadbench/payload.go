package loadbench

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
)

// mic is the venue of every benchmark symbol; the bars subtopic is
// {mic}.{symbol}, so the partition keys are XNAS.S00000 … XNAS.S{K-1}.
const mic = "XNAS"

// keyspace is the K symbols a run spreads its messages over, with the typed
// subtopics built once (as a service holds its instruments).
type keyspace struct {
	symbols   []string
	subtopics []bars.Subtopic
}

func newKeyspace(k int) *keyspace {
	width := max(5, len(strconv.Itoa(k-1)))
	ks := &keyspace{symbols: make([]string, k), subtopics: make([]bars.Subtopic, k)}
	for i := range k {
		ks.symbols[i] = fmt.Sprintf("S%0*d", width, i)
		ks.subtopics[i] = bars.MustSubtopic(mic, ks.symbols[i])
	}
	return ks
}

// owner is the publisher that sends message g: each key has one publisher
// when there are at least as many keys as publishers, so every key's
// event times rise in the order its messages are stored (the bars domain
// orders by event time, and a regression would be flagged). With fewer
// keys than publishers, publishers share keys.
func owner(g, keys, publishers int) int {
	if keys >= publishers {
		return (g % keys) % publishers
	}
	return g % publishers
}

// batch is one publisher's BarBatch, built once to the requested size and
// changed in place for each message: its symbol, event time and sequence.
// Both publish paths marshal it before returning, so reuse is safe, and
// both pay the same for it.
type batch struct {
	msg   *barsv1.BarBatch
	sec   *commonv1.SecurityId
	event *timestamppb.Timestamp
}

// eventBase is the event time of message 0; message g is g µs later.
var eventBase = time.Date(2025, 9, 5, 19, 30, 0, 0, time.UTC)

// newBatch adds bars until the marshalled batch reaches size bytes, measured
// with the widest symbol and a large sequence number.
func newBatch(size int, widest string) *batch {
	b := &batch{
		msg:   &barsv1.BarBatch{},
		sec:   &commonv1.SecurityId{Symbol: widest, Mic: mic},
		event: timestamppb.New(eventBase),
	}
	dec := func(v int64) *commonv1.Decimal { return &commonv1.Decimal{Scaled: v, Scale: 4} }
	for i := 0; len(b.msg.Bars) == 0 || proto.Size(b.msg) < size; i++ {
		start := eventBase.Add(time.Duration(i) * time.Minute)
		b.msg.Bars = append(b.msg.Bars, &barsv1.Bar{
			Security: b.sec, Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Minute)),
			Open: dec(1919900 + int64(i)), High: dec(1921000 + int64(i)), Low: dec(1918800 + int64(i)), Close: dec(1920500 + int64(i)),
			Volume: 120345 + int64(i), TradeCount: 812, Adjusted: true, EventTime: b.event,
			AdjustmentPolicy: commonv1.AdjustmentPolicy_ADJUSTMENT_POLICY_SPLIT_DIVIDEND,
		})
		b.msg.Bars[0].TradeCount = 1 << 30
	}
	return b
}

// set makes the batch message g of symbol: the sequence travels in the
// first bar's trade_count (plus one, so it is never the zero value proto3
// omits), and the event time grows with g.
func (b *batch) set(symbol string, g int) {
	b.sec.Symbol = symbol
	at := eventBase.Add(time.Duration(g) * time.Microsecond)
	b.event.Seconds, b.event.Nanos = at.Unix(), int32(at.Nanosecond())
	b.msg.Bars[0].TradeCount = int64(g) + 1
}

// seqOf reads back the sequence set encodes; ok is false for a payload
// the benchmark did not write.
func seqOf(m *barsv1.BarBatch) (uint64, bool) {
	bs := m.GetBars()
	if len(bs) == 0 || bs[0].GetTradeCount() <= 0 {
		return 0, false
	}
	return uint64(bs[0].GetTradeCount() - 1), true
}

// marshalRaw encodes a raw client's payload: with proto.Marshal, as a
// hand-written client would, or with the generated MarshalVT the typed
// publisher uses (Config.RawVTProto).
func (b *Bench) marshalRaw(m *barsv1.BarBatch) ([]byte, error) {
	if b.cfg.RawVTProto {
		return m.MarshalVT()
	}
	return proto.Marshal(m)
}

// unmarshalRaw decodes a raw client's payload: with proto.Unmarshal, or
// with the generated UnmarshalVT alone, as a hand-written client that
// adopted vtprotobuf would (Config.RawVTProto); the typed consumer walks
// the bytes first, to answer as proto does.
func (b *Bench) unmarshalRaw(data []byte, m *barsv1.BarBatch) error {
	if b.cfg.RawVTProto {
		return m.UnmarshalVT(data)
	}
	return proto.Unmarshal(data, m)
}
