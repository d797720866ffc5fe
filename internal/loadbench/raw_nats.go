package loadbench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

// rawNATS is the same load through nats.go's jetstream package, written as
// a careful client that honours the envelope would write it: the subjects
// and headers the binding writes, built per message, and a durable pull
// consumer that parses the envelope, decodes the payload and acks.
type rawNATS struct{}

func connectNATS(b *Bench, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(b.cfg.URL, append([]nats.Option{nats.Name(name)}, b.cfg.NATSOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", b.cfg.URL, err)
	}
	return nc, nil
}

func (rawNATS) publisher(_ context.Context, r *run, i int) (publisher, error) {
	nc, err := connectNATS(r.b, "ampybusctl-bench-raw-publisher-"+strconv.Itoa(i))
	if err != nil {
		return nil, err
	}
	adm := r.b.adm.(*natsAdmin)
	p := &rawNATSPub{
		nc: nc, r: r, stream: adm.stream, partitions: adm.partitions,
		slots: make(chan struct{}, asyncWindow), retry: make(chan *nats.Msg, asyncWindow),
		retried: make(chan struct{}),
	}
	// The window is held below nats.go's own limit, so PublishMsgAsync never
	// stalls ("too many outstanding async published messages"): a slot is
	// taken before each publish and given back when its ack (or its retry's
	// outcome) arrives.
	p.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(asyncWindow+1),
		jetstream.WithPublishAsyncTimeout(2*time.Second),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { <-p.slots }),
		// The handler runs under nats.go's lock: hand the message over.
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, _ error) { p.retry <- m }),
	)
	if err != nil {
		nc.Close()
		return nil, err
	}
	go p.retries()
	return p, nil
}

type rawNATSPub struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	r          *run
	stream     string
	partitions int
	slots      chan struct{}
	retry      chan *nats.Msg
	retried    chan struct{}
	failed     atomic.Int64
	firstErr   atomic.Pointer[error]
}

// retries republishes, with the same Nats-Msg-Id, what was not acknowledged.
func (p *rawNATSPub) retries() {
	defer close(p.retried)
	for m := range p.retry {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := p.js.PublishMsg(ctx, m); err != nil {
			p.failed.Add(1)
			p.firstErr.CompareAndSwap(nil, &err)
		}
		cancel()
		<-p.slots
	}
}

// headers is the envelope a typed publish of the same message writes. Its id
// comes from google/uuid, as a hand-written client's would: the typed
// layer's own UUIDv7 generator is part of what is measured.
func (r *run) headers(partitionKey string, now time.Time) envelope.Headers {
	return envelope.Headers{
		MessageID: uuid.Must(uuid.NewV7()).String(), SchemaFQDN: bars.SchemaFQDN, SchemaVersion: bars.SchemaVersion,
		SchemaHash: bars.SchemaHash, ContentType: envelope.ContentTypeProtobuf, ProducedAt: now,
		Producer: r.b.cfg.Producer, Source: r.b.cfg.Source, RunID: r.id, Trace: envelope.NewTrace(),
		PartitionKey: partitionKey,
	}
}

func (p *rawNATSPub) send(ctx context.Context, k int, b *batch) error {
	data, err := p.r.b.marshalRaw(b.msg)
	if err != nil {
		return err
	}
	key := mic + "." + p.r.b.keys.symbols[k]
	h := p.r.headers(key, time.Now())
	hdr := nats.Header{
		envelope.HeaderMessageID:     {h.MessageID},
		envelope.HeaderSchemaFQDN:    {h.SchemaFQDN},
		envelope.HeaderSchemaVersion: {h.SchemaVersion},
		envelope.HeaderContentType:   {h.ContentType},
		envelope.HeaderProducedAt:    {envelope.FormatTime(h.ProducedAt)},
		envelope.HeaderProducer:      {h.Producer},
		envelope.HeaderSource:        {h.Source},
		envelope.HeaderRunID:         {h.RunID},
		envelope.HeaderTraceparent:   {h.Trace.String()},
		envelope.HeaderPartitionKey:  {key},
		envelope.HeaderSchemaHash:    {h.SchemaHash},
		jetstream.MsgIDHeader:        {h.MessageID},
	}
	m := &nats.Msg{Subject: natsbinding.Subject(p.r.b.prefix+"."+key, key, p.partitions), Header: hdr, Data: data}
	if p.r.b.cfg.Sync {
		_, err := p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(p.stream))
		return err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if _, err := p.js.PublishMsgAsync(m, jetstream.WithExpectStream(p.stream)); err != nil {
		<-p.slots
		return err
	}
	return nil
}

func (p *rawNATSPub) flush(ctx context.Context) error {
	// Every slot free: every publish acknowledged or its retry settled.
	for range cap(p.slots) {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	for range cap(p.slots) {
		<-p.slots
	}
	if e := p.firstErr.Load(); e != nil {
		return fmt.Errorf("%d publishes failed: %w", p.failed.Load(), *e)
	}
	return nil
}

func (p *rawNATSPub) close() error {
	p.nc.Close()
	close(p.retry)
	<-p.retried
	return nil
}

func (rawNATS) consumer(ctx context.Context, r *run, i int, lat *latencies) (consumer, error) {
	nc, err := connectNATS(r.b, "ampybusctl-bench-raw-consumer-"+strconv.Itoa(i))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := &rawNATSCons{nc: nc}
	for way, group := range r.groups {
		w, err := rawNATSConsume(ctx, r, js, way, group, lat)
		if err != nil {
			_ = c.stop()
			return nil, err
		}
		c.ways = append(c.ways, w)
	}
	return c, nil
}

// rawNATSConsume runs one fan-out group's consumer on the connection: a
// durable pull consumer handled through Consume, as a hand-written service
// would.
func rawNATSConsume(ctx context.Context, r *run, js jetstream.JetStream, way int, group string, lat *latencies) (*rawNATSWay, error) {
	cfg := r.b.cfg
	adm := r.b.adm.(*natsAdmin)
	cc := jetstream.ConsumerConfig{
		Durable: group, FilterSubject: "*." + r.b.prefix + "." + bars.All().String(),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 1024,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
	if r.fromStart {
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &r.start
	}
	if cfg.NoGroup {
		// An ephemeral consumer, as a subscription outside a group has.
		cc.Durable, cc.InactiveThreshold = "", 30*time.Second
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, adm.stream, cc)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", group, adm.stream, err)
	}
	w := &rawNATSWay{}
	handle := func(keys []string, m jetstream.Msg) []string {
		hdr := m.Headers()
		keys = keys[:0]
		for k := range hdr {
			if !strings.HasPrefix(k, "Nats-") {
				keys = append(keys, k)
			}
		}
		h, err := envelope.Parse(keys, hdr.Get)
		var payload barsv1.BarBatch
		if err == nil && h.SchemaFQDN == bars.SchemaFQDN && h.ContentType == envelope.ContentTypeProtobuf {
			err = r.b.unmarshalRaw(m.Data(), &payload)
		} else if err == nil {
			err = errors.New("not a BarBatch")
		}
		if err != nil {
			r.handled(nil, way, "", 0, false, "", time.Time{}) // counted as foreign
		} else {
			seq, ok := seqOf(&payload)
			r.handled(lat, way, h.RunID, seq, ok, h.MessageID, h.ProducedAt)
		}
		_ = m.Ack()
		return keys
	}
	var cb jetstream.MessageHandler
	if cfg.Concurrency == 1 {
		var keys []string
		cb = func(m jetstream.Msg) { keys = handle(keys, m) }
	} else {
		// One worker per lane, a key always in the same lane: keys keep
		// their order, as the engine keeps them.
		lanes := make([]chan jetstream.Msg, cfg.Concurrency)
		for l := range lanes {
			lanes[l] = make(chan jetstream.Msg, 64)
			w.workers.Add(1)
			go func() {
				defer w.workers.Done()
				var keys []string
				for m := range lanes[l] {
					keys = handle(keys, m)
				}
			}()
		}
		w.lanes = lanes
		cb = func(m jetstream.Msg) {
			// The subject starts with the key's partition: lanes by
			// partition keep each key's order.
			tok, _, _ := strings.Cut(m.Subject(), ".")
			p, _ := strconv.Atoi(tok)
			lanes[max(p, 0)%len(lanes)] <- m
		}
	}
	w.cc, err = cons.Consume(cb, jetstream.PullMaxMessages(512), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		cfg.Logger.Debug("bench: raw consumer", "err", err)
	}))
	if err != nil {
		w.closeLanes()
		return nil, err
	}
	return w, nil
}

// rawNATSCons is one consumer's connection and its fan-out groups' consumers.
type rawNATSCons struct {
	nc   *nats.Conn
	ways []*rawNATSWay
}

type rawNATSWay struct {
	cc      jetstream.ConsumeContext
	lanes   []chan jetstream.Msg
	workers sync.WaitGroup
}

func (w *rawNATSWay) closeLanes() {
	for _, l := range w.lanes {
		close(l)
	}
	w.workers.Wait()
}

func (c *rawNATSCons) stop() error {
	for _, w := range c.ways {
		w.cc.Stop()
		<-w.cc.Closed()
		w.closeLanes()
	}
	c.nc.Close()
	return nil
}

// natsAdmin is the bench's own connection for the stream's layout, purges
// and group cleanup.
type natsAdmin struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	stream     string
	partitions int
}

func newNATSAdmin(ctx context.Context, b *Bench) (*natsAdmin, error) {
	nc, err := connectNATS(b, "ampybusctl-bench-admin")
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	a := &natsAdmin{nc: nc, js: js, stream: natsbinding.StreamName(b.prefix)}
	st, err := js.Stream(ctx, a.stream)
	if err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("stream %s: %w (create it with ampybusctl ensure-topic --topic %s, or pass --provision)", a.stream, err, b.prefix)
		}
		return nil, fmt.Errorf("stream %s: %w", a.stream, err)
	}
	// The partition count the binding placed keys by, from the stream's metadata.
	if n, err := strconv.Atoi(st.CachedInfo().Config.Metadata[natsbinding.MetaPartitions]); err == nil && n > 0 {
		a.partitions = n
	} else {
		a.partitions = 1
	}
	return a, nil
}

func (a *natsAdmin) purge(ctx context.Context) error {
	st, err := a.js.Stream(ctx, a.stream)
	if err == nil {
		err = st.Purge(ctx)
	}
	if err != nil {
		return fmt.Errorf("purge %s: %w", a.stream, err)
	}
	return nil
}

// groupConsumers names the stream's consumers of group: the raw client's
// durable, or the typed group's one per partition (group-part0, group-part1, …).
func (a *natsAdmin) groupConsumers(ctx context.Context, group string) ([]string, error) {
	st, err := a.js.Stream(ctx, a.stream)
	if err != nil {
		return nil, err
	}
	var out []string
	names := st.ConsumerNames(ctx)
	for n := range names.Name() {
		if n == group || strings.HasPrefix(n, group+"-part") {
			out = append(out, n)
		}
	}
	return out, names.Err()
}

func (a *natsAdmin) dropGroup(ctx context.Context, group string) error {
	names, err := a.groupConsumers(ctx, group)
	for _, n := range names {
		if derr := a.js.DeleteConsumer(ctx, a.stream, n); derr != nil && !errors.Is(derr, jetstream.ErrConsumerNotFound) {
			err = errors.Join(err, derr)
		}
	}
	return err
}

// ready waits until every one of the group's consumers is read: the raw
// client's pull consumer has a pull request waiting, each of the typed
// group's push consumers (one per partition) is bound to a member's inbox.
func (a *natsAdmin) ready(ctx context.Context, group string, _ int) error {
	return pollUntil(ctx, 10*time.Second, func(ctx context.Context) bool {
		names, err := a.groupConsumers(ctx, group)
		if err != nil || len(names) == 0 {
			return false
		}
		for _, n := range names {
			if c, err := a.js.PushConsumer(ctx, a.stream, n); err == nil {
				if !c.CachedInfo().PushBound {
					return false
				}
				continue
			}
			if c, err := a.js.Consumer(ctx, a.stream, n); err != nil || c.CachedInfo().NumWaiting == 0 {
				return false
			}
		}
		return true
	})
}

func (a *natsAdmin) close() { a.nc.Close() }
