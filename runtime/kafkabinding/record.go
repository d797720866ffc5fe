package kafkabinding

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// inlineHeaders is how many record headers an outgoing record holds
// without a second allocation: the subtopic and a publish's envelope.
const inlineHeaders = 14

// inlineFormatted is room for the header values an outgoing record formats
// (produced_at and traceparent are 85 bytes) without a second allocation.
const inlineFormatted = 96

// outgoing is one record on its way to the broker, with what its outcome
// goes to, in one allocation. It is also the record's Context (franz-go's
// slot for per-record data), so one promise function serves every record;
// as a context it never ends: a caller may cancel its own once
// PublishAsync has returned, and franz-go fails a buffered record whose
// context ends.
type outgoing struct {
	rec    kgo.Record
	hs     [inlineHeaders]kgo.RecordHeader
	fbuf   [inlineFormatted]byte
	parent context.Context // for Value: hooks read the caller's trace from it
	t      *Transport
	done   transport.AsyncResult
}

func (o *outgoing) Deadline() (time.Time, bool) { return time.Time{}, false }
func (o *outgoing) Done() <-chan struct{}       { return nil }
func (o *outgoing) Err() error                  { return nil }
func (o *outgoing) Value(key any) any {
	if o.parent == nil { // answered: the caller's context is let go
		return nil
	}
	return o.parent.Value(key)
}

// toRecord writes the envelope as record headers under the same names as on
// NATS, the subtopic first. The record has no context of its own: ProduceSync
// gives it the caller's, which bounds the attempt.
func toRecord(s transport.Stream, m *transport.Message) (*kgo.Record, error) {
	o := &outgoing{}
	if err := o.build(s, m); err != nil {
		return nil, err
	}
	return &o.rec, nil
}

// outgoings recycles the records of async publishes: after the promise
// franz-go holds no reference to a record (it lets the promise change it,
// and clears its own slots), so the record, its headers and its formatted
// values cost no allocation per publish.
var outgoings = sync.Pool{New: func() any { return new(outgoing) }}

// newOutgoing builds m's record for an async publish; release returns it.
func newOutgoing(s transport.Stream, m *transport.Message) (*outgoing, error) {
	o := outgoings.Get().(*outgoing)
	if err := o.build(s, m); err != nil {
		o.release()
		return nil, err
	}
	return o, nil
}

// release clears o, so the pool holds no message or caller, and returns it
// to the pool.
func (o *outgoing) release() {
	*o = outgoing{}
	outgoings.Put(o)
}

// build writes m's record into o.
func (o *outgoing) build(s transport.Stream, m *transport.Message) error {
	sub, ok := strings.CutPrefix(m.Topic, s.Prefix)
	if sub, ok = strings.CutPrefix(sub, "."); !ok || sub == "" {
		return fmt.Errorf("topic %s is not under %s", m.Topic, s.Prefix)
	}
	// Values held as text are not copied (readOnly); the rest are formatted
	// into the outgoing itself.
	hs := append(o.hs[:0], kgo.RecordHeader{Key: HeaderSubtopic, Value: readOnly(sub)})
	var key []byte
	m.Headers.AppendEach(o.fbuf[:0], func(k, v string) {
		hs = append(hs, kgo.RecordHeader{Key: k, Value: readOnly(v)})
		if k == envelope.HeaderPartitionKey {
			key = hs[len(hs)-1].Value
		}
	}, func(k string, v []byte) {
		hs = append(hs, kgo.RecordHeader{Key: k, Value: v})
	})
	if extra := hs[len(hs)-len(m.Headers.Extra):]; len(extra) > 1 {
		// Each visits Extra in map order; the wire order is fixed.
		slices.SortFunc(extra, func(a, b kgo.RecordHeader) int { return strings.Compare(a.Key, b.Key) })
	}
	if key == nil {
		key = []byte{} // an empty key, not a null one, as every record had
	}
	// The record timestamp is left to the client: the time of this write, as
	// JetStream stores it. Time-window replays and retention then mean the
	// same on both brokers, and a dead letter or redrive of an old message is
	// not failed by the client's delivery timeout, which franz-go measures
	// from the record timestamp. produced_at travels in its header.
	o.rec = kgo.Record{Topic: s.Prefix, Key: key, Value: m.Payload, Headers: hs}
	return nil
}

// readOnly is s's bytes, not a copy: franz-go only reads a produced
// record's key and header values (its own StringRecord does the same for
// values), and nothing here writes them. An empty s gives an empty value,
// not a null one.
func readOnly(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

func ack(r *kgo.Record) transport.PublishAck {
	return transport.PublishAck{Stream: r.Topic, Sequence: uint64(r.Offset), Partition: r.Partition}
}

// Publish implements transport.Transport.
func (t *Transport) Publish(ctx context.Context, s transport.Stream, m *transport.Message) (transport.PublishAck, error) {
	rec, err := toRecord(s, m)
	if err != nil {
		return transport.PublishAck{}, err
	}
	r, err := t.cl.ProduceSync(ctx, rec).First()
	if err != nil {
		return transport.PublishAck{}, needs(publishErr(err), "Write on topic "+s.Prefix)
	}
	return ack(r), nil
}

// PublishAsync implements transport.Transport; the binding's window bounds
// records awaiting their ack, and PublishAsync waits for room until ctx ends.
func (t *Transport) PublishAsync(ctx context.Context, s transport.Stream, m *transport.Message, done transport.AsyncResult) error {
	o, err := newOutgoing(s, m)
	if err != nil {
		return err
	}
	// The window is ours, not franz-go's buffer limit: franz-go reports a full
	// buffer only later, on the promise, and PublishAsync must say at once.
	if err := t.window.Acquire(ctx, nil); err != nil {
		o.release()
		return err
	}
	o.parent, o.t, o.done, o.rec.Context = ctx, t, done, o
	// ctx bounded the wait for room only: the record's own context never
	// ends.
	t.cl.Produce(o, &o.rec, promised)
	return nil
}

// promised is the promise of every async record: the record's context is
// the outgoing that says where its outcome goes.
func promised(r *kgo.Record, err error) {
	o := r.Context.(*outgoing)
	t, done := o.t, o.done
	t.window.Release()
	var a transport.PublishAck
	if err != nil {
		err = needs(publishErr(err), "Write on topic "+r.Topic)
	} else {
		a = ack(r)
	}
	// Released before done, which may hand the message back to its
	// caller's pool: nothing of it stays reachable from the record.
	o.release()
	done(a, err)
}
