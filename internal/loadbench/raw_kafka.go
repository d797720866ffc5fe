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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
)

// rawKafka is the same load through franz-go: records keyed by the
// partition key (the default key partitioner, murmur2 as the binding and
// the Java client use), the envelope and subtopic as record headers, and a
// group consumer that parses the envelope, decodes, and commits what it
// marked.
type rawKafka struct{}

func brokersOf(url string) []string {
	return strings.Split(strings.TrimPrefix(url, "kafka://"), ",")
}

func (b *Bench) kafkaClient(name string, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{kgo.SeedBrokers(brokersOf(b.cfg.URL)...), kgo.ClientID(name)}
	cl, err := kgo.NewClient(append(append(base, b.cfg.KafkaOptions...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

func (rawKafka) publisher(_ context.Context, r *run, i int) (publisher, error) {
	// The buffer bounds records awaiting their ack: Produce waits for room.
	cl, err := r.b.kafkaClient("ampybusctl-bench-raw-publisher-"+strconv.Itoa(i),
		kgo.MaxBufferedRecords(asyncWindow), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return nil, err
	}
	p := &rawKafkaPub{cl: cl, r: r}
	p.promise = func(_ *kgo.Record, err error) {
		if err != nil {
			p.failed.Add(1)
			p.firstErr.CompareAndSwap(nil, &err)
		}
	}
	return p, nil
}

type rawKafkaPub struct {
	cl       *kgo.Client
	r        *run
	promise  func(*kgo.Record, error)
	failed   atomic.Int64
	firstErr atomic.Pointer[error]
}

func (p *rawKafkaPub) send(ctx context.Context, k int, b *batch) error {
	data, err := p.r.b.marshalRaw(b.msg)
	if err != nil {
		return err
	}
	key := mic + "." + p.r.b.keys.symbols[k]
	h := p.r.headers(key, time.Now())
	rec := &kgo.Record{Topic: p.r.b.prefix, Key: []byte(key), Value: data, Headers: []kgo.RecordHeader{
		{Key: kafkabinding.HeaderSubtopic, Value: []byte(key)},
		{Key: envelope.HeaderMessageID, Value: []byte(h.MessageID)},
		{Key: envelope.HeaderSchemaFQDN, Value: []byte(h.SchemaFQDN)},
		{Key: envelope.HeaderSchemaVersion, Value: []byte(h.SchemaVersion)},
		{Key: envelope.HeaderContentType, Value: []byte(h.ContentType)},
		{Key: envelope.HeaderProducedAt, Value: []byte(envelope.FormatTime(h.ProducedAt))},
		{Key: envelope.HeaderProducer, Value: []byte(h.Producer)},
		{Key: envelope.HeaderSource, Value: []byte(h.Source)},
		{Key: envelope.HeaderRunID, Value: []byte(h.RunID)},
		{Key: envelope.HeaderTraceparent, Value: []byte(h.Trace.String())},
		{Key: envelope.HeaderPartitionKey, Value: []byte(key)},
		{Key: envelope.HeaderSchemaHash, Value: []byte(h.SchemaHash)},
	}}
	if p.r.b.cfg.Sync {
		return p.cl.ProduceSync(ctx, rec).FirstErr()
	}
	p.cl.Produce(ctx, rec, p.promise)
	return nil
}

func (p *rawKafkaPub) flush(ctx context.Context) error {
	if err := p.cl.Flush(ctx); err != nil {
		return err
	}
	if e := p.firstErr.Load(); e != nil {
		return fmt.Errorf("%d publishes failed: %w", p.failed.Load(), *e)
	}
	return nil
}

func (p *rawKafkaPub) close() error {
	p.cl.Close()
	return nil
}

func (rawKafka) consumer(_ context.Context, r *run, i int, lat *latencies) (consumer, error) {
	// A franz-go client is a member of one group: a fan-out group each.
	var cs fanout
	for way, group := range r.groups {
		c, err := rawKafkaConsume(r, i, way, group, lat)
		if err != nil {
			_ = cs.stop()
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// rawKafkaConsume runs one fan-out group's member: a client polling
// records, handling them and marking them for the auto-commit, as a
// hand-written service would.
func rawKafkaConsume(r *run, i, way int, group string, lat *latencies) (*rawKafkaCons, error) {
	cfg := r.b.cfg
	// A new group reads from the run's start: records produced after the
	// consumers were started in e2e, the preload in consume mode.
	opts := []kgo.Opt{kgo.ConsumeTopics(r.b.prefix), kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(r.start.UnixMilli())),
		kgo.FetchMaxWait(250 * time.Millisecond)}
	if !cfg.NoGroup {
		opts = append(opts, kgo.ConsumerGroup(group), kgo.AutoCommitMarks(), kgo.BlockRebalanceOnPoll())
	}
	cl, err := r.b.kafkaClient("ampybusctl-bench-raw-consumer-"+strconv.Itoa(i), opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &rawKafkaCons{cl: cl, cancel: cancel, done: make(chan struct{})}
	handle := func(keys []string, rec *kgo.Record) []string {
		keys = keys[:0]
		for _, h := range rec.Headers {
			if h.Key != kafkabinding.HeaderSubtopic {
				keys = append(keys, h.Key)
			}
		}
		h, err := envelope.Parse(keys, func(k string) string {
			for _, h := range rec.Headers {
				if h.Key == k {
					return string(h.Value)
				}
			}
			return ""
		})
		var payload barsv1.BarBatch
		if err == nil && h.SchemaFQDN == bars.SchemaFQDN && h.ContentType == envelope.ContentTypeProtobuf {
			err = r.b.unmarshalRaw(rec.Value, &payload)
		} else if err == nil {
			err = errors.New("not a BarBatch")
		}
		if err != nil {
			r.handled(nil, way, "", 0, false, "", time.Time{}) // counted as foreign
		} else {
			seq, ok := seqOf(&payload)
			r.handled(lat, way, h.RunID, seq, ok, h.MessageID, h.ProducedAt)
		}
		return keys
	}
	go func() {
		defer close(c.done)
		var keys []string
		lanes := make([][]*kgo.Record, cfg.Concurrency)
		var wg sync.WaitGroup
		for {
			fs := cl.PollRecords(ctx, 1024)
			if fs.IsClientClosed() || ctx.Err() != nil {
				cl.AllowRebalance() // the poll blocked rebalances; leaving the group is one
				return
			}
			fs.EachError(func(t string, p int32, err error) {
				cfg.Logger.Debug("bench: raw consumer fetch", "topic", t, "partition", p, "err", err)
			})
			recs := fs.Records()
			if cfg.Concurrency == 1 {
				for _, rec := range recs {
					keys = handle(keys, rec)
				}
			} else {
				// Lanes by key keep each key's order; the batch is marked
				// only when every lane is through it.
				for l := range lanes {
					lanes[l] = lanes[l][:0]
				}
				for _, rec := range recs {
					// A key lives in one partition: lanes by partition keep its order.
					l := int(rec.Partition) % len(lanes)
					lanes[l] = append(lanes[l], rec)
				}
				for _, lane := range lanes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var keys []string
						for _, rec := range lane {
							keys = handle(keys, rec)
						}
					}()
				}
				wg.Wait()
			}
			cl.MarkCommitRecords(recs...)
			cl.AllowRebalance()
		}
	}()
	return c, nil
}

type rawKafkaCons struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *rawKafkaCons) stop() error {
	c.cancel()
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.cl.CommitMarkedOffsets(ctx)
	c.cl.Close()
	return err
}

// kafkaAdmin is the bench's own client for purges and group cleanup.
type kafkaAdmin struct {
	cl         *kgo.Client
	adm        *kadm.Client
	topic      string
	partitions int
}

func newKafkaAdmin(ctx context.Context, b *Bench) (*kafkaAdmin, error) {
	cl, err := b.kafkaClient("ampybusctl-bench-admin")
	if err != nil {
		return nil, err
	}
	a := &kafkaAdmin{cl: cl, adm: kadm.NewClient(cl), topic: b.prefix}
	topics, err := a.adm.ListTopics(ctx, a.topic)
	if err == nil {
		err = topics.Error()
	}
	if err == nil && !topics.Has(a.topic) {
		err = kerr.UnknownTopicOrPartition
	}
	if err != nil {
		cl.Close()
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("topic %s: %w (create it with ampybusctl ensure-topic --topic %s, or pass --provision)", a.topic, err, a.topic)
		}
		return nil, fmt.Errorf("topic %s: %w", a.topic, err)
	}
	a.partitions = len(topics[a.topic].Partitions)
	return a, nil
}

func (a *kafkaAdmin) purge(ctx context.Context) error {
	ends, err := a.adm.ListEndOffsets(ctx, a.topic)
	if err == nil {
		err = ends.Error()
	}
	if err == nil {
		var resp kadm.DeleteRecordsResponses
		resp, err = a.adm.DeleteRecords(ctx, ends.Offsets())
		if err == nil {
			err = resp.Error()
		}
	}
	if err != nil {
		return fmt.Errorf("purge %s: %w", a.topic, err)
	}
	return nil
}

func (a *kafkaAdmin) dropGroup(ctx context.Context, group string) error {
	resp, err := a.adm.DeleteGroup(ctx, group)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil
	}
	return err
}

// ready waits until the group is stable with every member in it and every
// partition assigned.
func (a *kafkaAdmin) ready(ctx context.Context, group string, members int) error {
	return pollUntil(ctx, 30*time.Second, func(ctx context.Context) bool {
		described, err := a.adm.DescribeGroups(ctx, group)
		if err != nil {
			return false
		}
		g, ok := described[group]
		if !ok || g.Err != nil || g.State != "Stable" || len(g.Members) < members {
			return false
		}
		assigned := 0
		for _, m := range g.Members {
			if c, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range c.Topics {
					assigned += len(t.Partitions)
				}
			}
		}
		return assigned >= a.partitions
	})
}

func (a *kafkaAdmin) close() { a.cl.Close() }
