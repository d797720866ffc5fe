package kafkabinding

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/checkpoint"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// TopicStore keeps a consumer group's dedupe marks and ordering checkpoints
// in a compacted Kafka topic, the way Kafka Streams keeps state: every
// write is produced and acknowledged before the message it records is
// settled, and every member reads the whole topic into memory and follows
// it. When a partition moves to a member, the bus first calls Sync, which
// reads the topic up to its end, so the new owner sees every mark the old
// one made before it died and applies nothing twice.
type TopicStore struct {
	t     *Transport
	topic string
	cl    *kgo.Client // follows the topic from its start
	stop  context.CancelFunc
	done  chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond
	marks   map[string]time.Time // dedupe key → expiry
	points  map[string]time.Time // checkpoint key → ordering time
	next    map[int32]int64      // partition → next offset to read
	lastErr error
	swept   time.Time
}

// sweep forgets expired marks, so memory holds only what can still match.
// Callers hold s.mu.
func (s *TopicStore) sweep() {
	now := time.Now()
	for k, exp := range s.marks {
		if now.After(exp) {
			delete(s.marks, k)
		}
	}
	s.swept = now
}

var (
	_ dedupe.Store     = (*TopicStore)(nil)
	_ checkpoint.Store = (*TopicStore)(nil)
)

// Record keys are prefixed by kind, so marks and checkpoints share a topic.
const (
	markPrefix  = "d|"
	pointPrefix = "c|"
)

// NewTopicStore opens the store in topic, creating it compacted (and
// deleting entries older than retain, at least a day) with the replication
// of the contract's critical domains when it does not exist. Close it after
// the subscriptions that use it.
func NewTopicStore(ctx context.Context, t *Transport, topic string, retain time.Duration, replicas int) (*TopicStore, error) {
	retain = max(retain, 24*time.Hour)
	rf, err := t.replicationFactor(ctx, transport.Stream{Prefix: topic, Replicas: replicas})
	if err != nil {
		return nil, err
	}
	policy, ms := "compact,delete", strconv.FormatInt(retain.Milliseconds(), 10)
	resp, err := t.adm.CreateTopic(ctx, 1, rf, map[string]*string{"cleanup.policy": &policy, "retention.ms": &ms}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return nil, fmt.Errorf("store topic %s: %w", topic, mapErr(err))
	}
	cl, err := kgo.NewClient(append(t.baseOpts(),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))...)
	if err != nil {
		return nil, fmt.Errorf("store topic %s: %w", topic, err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	s := &TopicStore{t: t, topic: topic, cl: cl, stop: cancel, done: make(chan struct{}),
		marks: map[string]time.Time{}, points: map[string]time.Time{}, next: map[int32]int64{}}
	s.cond = sync.NewCond(&s.mu)
	go s.follow(cctx)
	if err := s.Sync(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// follow applies the topic's records to memory as they come.
func (s *TopicStore) follow(ctx context.Context) {
	defer close(s.done)
	for {
		fetches := s.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		s.mu.Lock()
		if time.Since(s.swept) > time.Minute {
			s.sweep()
		}
		fetches.EachError(func(_ string, _ int32, err error) { s.lastErr = err })
		fetches.EachRecord(func(r *kgo.Record) {
			s.apply(string(r.Key), r.Value)
			s.next[r.Partition] = r.Offset + 1
		})
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// apply records one entry; a nil value deletes it. Callers hold s.mu.
func (s *TopicStore) apply(key string, value []byte) {
	var m map[string]time.Time
	switch {
	case len(key) > len(markPrefix) && key[:len(markPrefix)] == markPrefix:
		m, key = s.marks, key[len(markPrefix):]
	case len(key) > len(pointPrefix) && key[:len(pointPrefix)] == pointPrefix:
		m, key = s.points, key[len(pointPrefix):]
	default:
		return
	}
	if value == nil {
		delete(m, key)
		return
	}
	if ns, err := strconv.ParseInt(string(value), 10, 64); err == nil {
		if old, ok := m[key]; !ok || time.Unix(0, ns).After(old) {
			m[key] = time.Unix(0, ns)
		}
	}
}

// Sync reads the topic up to its end as of now: everything any member wrote
// before the call is then visible here.
func (s *TopicStore) Sync(ctx context.Context) error {
	ends, err := s.t.adm.ListEndOffsets(ctx, s.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("store topic %s: end offsets: %w", s.topic, mapErr(err))
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		caught := true
		for p, end := range want {
			if s.next[p] < end {
				caught = false
			}
		}
		if caught {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("store topic %s: catching up: %w (last fetch error: %v)", s.topic, ctx.Err(), s.lastErr)
		}
		s.cond.Wait()
	}
}

// put writes one entry and waits for the broker's ack.
func (s *TopicStore) put(ctx context.Context, key string, at time.Time) error {
	v := strconv.FormatInt(at.UnixNano(), 10)
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.topic, Key: []byte(key), Value: []byte(v)}).FirstErr(); err != nil {
		return fmt.Errorf("store topic %s: %w", s.topic, publishErr(err))
	}
	s.mu.Lock()
	s.apply(key, []byte(v))
	s.mu.Unlock()
	return nil
}

// Seen implements dedupe.Store.
func (s *TopicStore) Seen(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.marks[key]
	if ok && time.Now().After(exp) {
		delete(s.marks, key)
		return false, nil
	}
	return ok, nil
}

// Mark implements dedupe.Store.
func (s *TopicStore) Mark(ctx context.Context, key string, ttl time.Duration) error {
	return s.put(ctx, markPrefix+key, time.Now().Add(ttl))
}

// Load implements checkpoint.Store.
func (s *TopicStore) Load(_ context.Context, key string) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.points[key]
	return t, ok, nil
}

// Save implements checkpoint.Store; the store keeps the latest time it has
// seen for a key, whichever member wrote it.
func (s *TopicStore) Save(ctx context.Context, key string, t time.Time) error {
	return s.put(ctx, pointPrefix+key, t)
}

// Close stops following the topic.
func (s *TopicStore) Close() error {
	s.stop()
	s.cl.Close()
	<-s.done
	return nil
}
