// Package kafkabinding carries the bus over Kafka with franz-go: one topic per
// env and domain (ampy.prod.bars.v1), the subtopic in a record header, the
// partition key as the record key (murmur2, as the Java client partitions),
// and offsets committed only past messages the handler settled.
package kafkabinding

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/certfiles"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// HeaderSubtopic carries the subtopic (XNAS.AAPL) on a record, since the
// Kafka topic stops at the domain version (ampy.prod.bars.v1).
const HeaderSubtopic = "subtopic"

// HeaderAllowance is the room kept above a domain's max payload for headers.
const HeaderAllowance = 64 << 10

// Config says how to reach the cluster.
type Config struct {
	Brokers []string
	// AsyncWindow bounds buffered async records (default 4096); Produce
	// waits for room, bounded by its context.
	AsyncWindow int
	// FailWhenFull makes PublishAsync fail at once with ErrBackpressure when
	// the buffer is full, instead of waiting for room.
	FailWhenFull bool
	// Options are extra franz-go options (TLS, SASL).
	Options []kgo.Opt
	Logger  *slog.Logger
}

// Transport is the Kafka binding; it implements transport.Transport.
type Transport struct {
	cfg  Config
	cl   *kgo.Client
	adm  *kadm.Client
	log  *slog.Logger
	mu   sync.Mutex
	max  map[string]int32 // topic → max.message.bytes, for producer batches
	once sync.Once
	// window bounds async records awaiting their ack.
	window *transport.Window
}

var _ transport.Transport = (*Transport)(nil)

// Open connects the producer and checks that a broker answers.
func Open(ctx context.Context, cfg Config) (*Transport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AsyncWindow <= 0 {
		cfg.AsyncWindow = 4096
	}
	t := &Transport{cfg: cfg, log: cfg.Logger, max: map[string]int32{}, window: transport.NewWindow(cfg.AsyncWindow, cfg.FailWhenFull)}
	opts := append(t.baseOpts(),
		// Room for the async window plus concurrent sync publishes.
		kgo.MaxBufferedRecords(cfg.AsyncWindow+1024),
		kgo.ProducerBatchMaxBytesFn(t.batchMax),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RecordDeliveryTimeout(30*time.Second),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	t.cl, t.adm = cl, kadm.NewClient(cl)
	if _, err := t.adm.ListBrokers(ctx); err != nil {
		cl.Close()
		return nil, connectErr(strings.Join(cfg.Brokers, ","), err)
	}
	return t, nil
}

func (t *Transport) baseOpts() []kgo.Opt {
	return append([]kgo.Opt{
		kgo.SeedBrokers(t.cfg.Brokers...),
		kgo.ClientID("ampy-bus"),
		kgo.WithLogger(kgoLogger{t.log}),
	}, t.cfg.Options...)
}

func (t *Transport) batchMax(topic string) int32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.max[topic]; ok {
		return m
	}
	return 1 << 20
}

// Name implements transport.Transport.
func (t *Transport) Name() string { return "kafka" }

// Client exposes the producer client for tools that need raw access.
func (t *Transport) Client() *kgo.Client { return t.cl }

// EnsureStream creates the domain's topic, or brings an existing one's
// retention, size limit and partition count up to the contract.
func (t *Transport) EnsureStream(ctx context.Context, s transport.Stream) error {
	configs := map[string]*string{}
	set := func(k, v string) { configs[k] = &v }
	if s.Retention > 0 {
		set("retention.ms", strconv.FormatInt(s.Retention.Milliseconds(), 10))
	}
	maxBytes := int32(0)
	if s.MaxPayload > 0 {
		maxBytes = int32(min(s.MaxPayload+HeaderAllowance, 1<<31-1))
		set("max.message.bytes", strconv.Itoa(int(maxBytes)))
	}
	partitions := int32(max(s.Partitions, 1))
	replicas, err := t.replicationFactor(ctx, s)
	if err != nil {
		return err
	}
	resp, err := t.adm.CreateTopic(ctx, partitions, replicas, configs, s.Prefix)
	switch {
	case err == nil && resp.Err == nil:
	case errors.Is(err, kerr.TopicAlreadyExists) || errors.Is(resp.Err, kerr.TopicAlreadyExists):
		if err := t.reconcile(ctx, s, configs, partitions, replicas); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("ensure topic %s: %w", s.Prefix, mapErr(err))
	default:
		return fmt.Errorf("ensure topic %s: %w", s.Prefix, mapErr(resp.Err))
	}
	if maxBytes > 0 {
		t.mu.Lock()
		t.max[s.Prefix] = maxBytes
		t.mu.Unlock()
	}
	return nil
}

// replicationFactor is the contract's replicas, or the broker count of a
// smaller cluster (a development broker holds one copy).
// CheckStream implements transport.Transport: it reads the topic's
// metadata (Describe), which a producer's or consumer's ACLs allow.
func (t *Transport) CheckStream(ctx context.Context, s transport.Stream) error {
	details, err := t.adm.ListTopics(ctx, s.Prefix)
	if err != nil {
		return fmt.Errorf("check topic %s: %w", s.Prefix, needs(mapErr(err), "Describe on topic "+s.Prefix))
	}
	d, ok := details[s.Prefix]
	switch {
	case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("%w: topic %s does not exist", transport.ErrNotFound, s.Prefix)
	case d.Err != nil:
		return fmt.Errorf("check topic %s: %w", s.Prefix, needs(mapErr(d.Err), "Describe on topic "+s.Prefix))
	}
	if s.MaxPayload > 0 {
		// Batches stay within what EnsureStream sets on the topic.
		t.mu.Lock()
		t.max[s.Prefix] = int32(min(s.MaxPayload+HeaderAllowance, 1<<31-1))
		t.mu.Unlock()
	}
	return nil
}

func (t *Transport) replicationFactor(ctx context.Context, s transport.Stream) (int16, error) {
	want := max(s.Replicas, 1)
	if want == 1 {
		return 1, nil
	}
	brokers, err := t.adm.ListBrokers(ctx)
	if err != nil {
		return 0, fmt.Errorf("ensure topic %s: list brokers: %w", s.Prefix, mapErr(err))
	}
	if len(brokers) < want {
		t.log.Info("the Kafka cluster has fewer brokers than the contract's replicas; the topic holds one copy per broker", "topic", s.Prefix, "contract_replicas", want, "brokers", len(brokers))
		want = max(len(brokers), 1)
	}
	return int16(want), nil
}

// reconcile applies the contract's configs to an existing topic and grows
// its partitions; partitions and replication factor are never lowered, and
// a difference is logged.
func (t *Transport) reconcile(ctx context.Context, s transport.Stream, configs map[string]*string, partitions int32, replicas int16) error {
	var alter []kadm.AlterConfig
	for k, v := range configs {
		alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: v})
	}
	if len(alter) > 0 {
		if _, err := t.adm.AlterTopicConfigs(ctx, alter, s.Prefix); err != nil {
			return fmt.Errorf("ensure topic %s: alter configs: %w", s.Prefix, mapErr(err))
		}
	}
	details, err := t.adm.ListTopics(ctx, s.Prefix)
	if err != nil {
		return fmt.Errorf("ensure topic %s: %w", s.Prefix, mapErr(err))
	}
	d, ok := details[s.Prefix]
	if ok {
		if have := int32(len(d.Partitions)); have > partitions {
			t.log.Warn("topic differs from the contract; keeping the broker's value", "topic", s.Prefix, "setting", "partitions", "broker", have, "contract", partitions)
		}
		if have := int16(d.Partitions.NumReplicas()); have != replicas && have > 0 {
			t.log.Warn("topic differs from the contract; keeping the broker's value (change it with a partition reassignment)", "topic", s.Prefix, "setting", "replicas", "broker", have, "contract", replicas)
		}
	}
	if ok && int32(len(d.Partitions)) < partitions {
		resp, err := t.adm.UpdatePartitions(ctx, int(partitions), s.Prefix)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("ensure topic %s: grow to %d partitions: %w", s.Prefix, partitions, mapErr(err))
		}
	}
	return nil
}

// Flush implements transport.Transport.
func (t *Transport) Flush(ctx context.Context) error {
	if err := t.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", mapErr(err))
	}
	return nil
}

// Close flushes buffered records (up to 10 s) and closes the client.
func (t *Transport) Close() error {
	var err error
	t.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if ferr := t.cl.Flush(ctx); ferr != nil {
			err = fmt.Errorf("close: %w", ferr)
		}
		t.cl.Close()
	})
	return err
}

// mapErr wraps franz-go errors in the transport's sentinels.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return fmt.Errorf("%w: %w (the Kafka principal lacks the ACL: grant it under services: in the contract and apply the ACLs with ampybusctl acl apply)", transport.ErrForbidden, err)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("%w: %w (raise the topic's max.message.bytes)", transport.ErrTooLarge, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("%w: %w", transport.ErrNotFound, err)
	case errors.Is(err, kgo.ErrClientClosed):
		return fmt.Errorf("%w: %w", transport.ErrClosed, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries), kgo.IsRetryableBrokerErr(err):
		return fmt.Errorf("%w: %w", transport.ErrUnavailable, err)
	}
	return err
}

// needs names the right a refused request lacked.
func needs(err error, right string) error {
	if errors.Is(err, transport.ErrForbidden) {
		return fmt.Errorf("%w; it needs %s", err, right)
	}
	return err
}

// publishErr classifies a produce failure: a record the client gave up on
// after sending it (a timeout, exhausted retries) may have been written.
func publishErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries) {
		return fmt.Errorf("%w: %w: %w", transport.ErrUnavailable, transport.ErrMaybeStored, err)
	}
	return mapErr(err)
}

// parseHeaders decodes a record's envelope and its subtopic, and checks
// that the record key is the partition_key: Kafka partitions by the key,
// so a record whose key says otherwise sits apart from its key's order.
func parseHeaders(key []byte, hs []kgo.RecordHeader) (envelope.Headers, string, error) {
	// Every value is cut from one string: a record's headers cost one
	// allocation, not one per header.
	size := 0
	for _, h := range hs {
		size += len(h.Value)
	}
	var all strings.Builder
	all.Grow(size)
	for _, h := range hs {
		all.Write(h.Value)
	}
	values := all.String()
	var kbuf, vbuf [24]string
	keys, vals := kbuf[:0], vbuf[:0]
	// A hostile record may carry thousands of headers: past a handful,
	// repeats are found through a set, not by scanning.
	var seen map[string]struct{}
	if len(hs) > len(kbuf) {
		seen = make(map[string]struct{}, len(hs))
	}
	repeated := func(k string) bool {
		if seen == nil {
			return slices.Contains(keys, k)
		}
		_, dup := seen[k]
		seen[k] = struct{}{}
		return dup
	}
	var counts map[string]int
	sub, hasSub := "", false
	at := 0
	for _, h := range hs {
		v := values[at : at+len(h.Value)]
		at += len(h.Value)
		if (h.Key == HeaderSubtopic && hasSub) || (h.Key != HeaderSubtopic && repeated(h.Key)) {
			if counts == nil {
				counts = map[string]int{}
			}
			counts[h.Key]++
			continue // the first one counts; the record is poison anyway
		}
		if h.Key == HeaderSubtopic {
			sub, hasSub = v, true
			continue
		}
		keys, vals = append(keys, h.Key), append(vals, v)
	}
	var errs []error
	for k, n := range counts {
		errs = append(errs, envelope.Repeated(k, n+1))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if !hasSub {
		errs = append(errs, &envelope.HeaderError{Header: HeaderSubtopic, Reason: "missing: a Kafka record names its subtopic (XNAS.AAPL) in this header"})
	}
	// Parse asks for each key once, in order: the getter follows along.
	next := 0
	h, err := envelope.Parse(keys, func(k string) string {
		if next < len(keys) && keys[next] == k {
			next++
			return vals[next-1]
		}
		return vals[slices.Index(keys, k)]
	})
	if h.PartitionKey != "" && string(key) != h.PartitionKey {
		errs = append(errs, &envelope.HeaderError{Header: "record key", Value: string(key), Reason: fmt.Sprintf("differs from partition_key %q; produce with the partition_key as the record key", h.PartitionKey)})
	}
	return h, sub, errors.Join(append(errs, err)...)
}

type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka: "+msg, kv...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka: "+msg, kv...)
	}
}

// connectErr says why a connection failed and what to do.
func connectErr(brokers string, err error) error {
	if fix := certfiles.Explain(err); fix != "" {
		return fmt.Errorf("connect to Kafka at %s: %w: %v (%s)", brokers, transport.ErrForbidden, err, fix)
	}
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("connect to Kafka at %s: %w: authentication failed: %v (check the SASL user, password and mechanism: --sasl-user, --sasl-pass, --sasl-mechanism)", brokers, transport.ErrForbidden, err)
	case errors.Is(err, io.EOF):
		// Brokers that refuse credentials or a TLS mismatch can just hang up.
		return fmt.Errorf("connect to Kafka at %s: %w: the broker closed the connection: %v (a wrong SASL user, password or mechanism, or TLS on one side only, ends it this way: check --sasl-* and --tls)", brokers, transport.ErrUnavailable, err)
	}
	return fmt.Errorf("connect to Kafka at %s: %w: %v (is a broker listening there?)", brokers, transport.ErrUnavailable, err)
}
