package busctl

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/internal/latency"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/fixture"
	"github.com/ampyfin/ampy-bus/runtime/transport"
	"github.com/spf13/pflag"
)

// published prints where a message was stored.
func (e *env) published(asJSON bool, res ampybus.PublishResult, keys ampybus.Keys) {
	if asJSON {
		js, _ := json.Marshal(map[string]any{"topic": res.Topic, "stream": res.Stream, "sequence": res.Sequence,
			"partition": res.Partition, "message_id": res.MessageID, "partition_key": keys.Partition, "duplicate": res.Duplicate})
		fmt.Fprintln(e.stdout, string(js))
		return
	}
	dup := ""
	if res.Duplicate {
		dup = " (duplicate: the broker already had this message id)"
	}
	fmt.Fprintf(e.stdout, "published %s  stream %s seq %d partition %d  partition_key %s  message_id %s%s\n",
		res.Topic, res.Stream, res.Sequence, res.Partition, keys.Partition, res.MessageID, dup)
}

func pubEmpty(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, true)
	topic := fs.String("topic", "", "concrete topic, e.g. ampy.dev.bars.v1.XNAS.AAPL")
	pk := fs.String("pk", "", "partition key; the payload's key fields are filled from it by the contract's template")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, args []string) error {
		tp, err := typed(*topic)
		if err != nil {
			return err
		}
		p, err := tp.Route.Skeleton(tp.Subtopic, *pk)
		if err != nil {
			return fmt.Errorf("%w (pub-empty fills only the fields a key names; publish a full payload with ampybusctl pub --payload)", err)
		}
		return publish(ctx, e, c, tp, p, *asJSON)
	}
}

func publish(ctx context.Context, e *env, c *conn, tp ampybus.Topic, p proto.Message, asJSON bool) error {
	b, err := c.open(ctx, tp.Env)
	if err != nil {
		return err
	}
	defer b.Close()
	c.note(b)
	keys, err := tp.Route.Keys(tp.Subtopic, p)
	if err != nil {
		return err
	}
	res, err := tp.Route.Publish(ctx, b, tp.Subtopic, p)
	if err != nil {
		return err
	}
	e.published(asJSON, res, keys)
	return nil
}

func pub(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, true)
	topic := fs.String("topic", "", "concrete topic (the fixture's own when --fixture)")
	payload := fs.String("payload", "", "payload as protojson, e.g. '{\"client_order_id\":\"co_1\",…}'")
	payloadFile := fs.String("payload-file", "", "file holding the payload as protojson")
	fixtureFile := fs.String("fixture", "", "golden fixture to publish verbatim: its headers and bytes exactly")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, args []string) error {
		given := 0
		for _, v := range []string{*payload, *payloadFile, *fixtureFile} {
			if v != "" {
				given++
			}
		}
		if given != 1 {
			return usagef("give exactly one of --payload, --payload-file and --fixture")
		}
		if *fixtureFile != "" {
			return pubFixture(ctx, e, c, *fixtureFile, *topic, *asJSON)
		}
		tp, err := typed(*topic)
		if err != nil {
			return err
		}
		js := []byte(*payload)
		if *payloadFile != "" {
			if js, err = os.ReadFile(*payloadFile); err != nil {
				return err
			}
		}
		p := tp.Route.NewPayload()
		if err := protojson.Unmarshal(js, p); err != nil {
			return fmt.Errorf("payload is not %s in protojson: %v", tp.Route.Spec.Schema.FQDN, err)
		}
		return publish(ctx, e, c, tp, p, *asJSON)
	}
}

// pubFixture publishes a fixture verbatim once it validates.
func pubFixture(ctx context.Context, e *env, c *conn, path, topic string, asJSON bool) error {
	f, err := fixture.Load(path)
	if err != nil {
		return err
	}
	if topic != "" && topic != f.Topic {
		return usagef("--topic %s differs from the fixture's topic %s; a fixture is published where it says", topic, f.Topic)
	}
	if problems := fixture.Validate(catalog, f); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p)
		}
		return fmt.Errorf("%s breaks the contract in %d ways; nothing was published", path, len(problems))
	}
	tp, err := catalog.Resolve(f.Topic)
	if err != nil {
		return err
	}
	m, err := f.Message()
	if err != nil {
		return err
	}
	c.producer = ""
	b, err := c.open(ctx, tp.Env)
	if err != nil {
		return err
	}
	defer b.Close()
	c.note(b)
	res, err := ampybus.PublishEnvelope(ctx, b, catalog, m)
	if err != nil {
		return err
	}
	e.published(asJSON, res, ampybus.Keys{Partition: m.Headers.PartitionKey})
	return nil
}

func poison(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, true)
	topic := fs.String("topic", "", "concrete topic, e.g. ampy.dev.bars.v1.XNAS.AAPL")
	pk := fs.String("pk", "", "partition key (default: what the contract derives for the smallest payload)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, args []string) error {
		tp, err := typed(*topic)
		if err != nil {
			return err
		}
		skel, err := tp.Route.Skeleton(tp.Subtopic, *pk)
		if err != nil {
			return err
		}
		keys, err := tp.Route.Keys(tp.Subtopic, skel)
		if err != nil {
			return err
		}
		b, err := c.open(ctx, tp.Env)
		if err != nil {
			return err
		}
		defer b.Close()
		c.note(b)
		producer, source, runID := b.Identity()
		s := tp.Route.Spec.Schema
		h := envelope.Headers{
			MessageID: envelope.NewMessageID(), SchemaFQDN: s.FQDN, SchemaVersion: s.Version, SchemaHash: s.Hash,
			ContentType: envelope.ContentTypeProtobuf, ProducedAt: time.Now().UTC(), Producer: producer, Source: source,
			RunID: runID, PartitionKey: keys.Partition, DedupeKey: keys.Dedupe, Trace: envelope.NewTrace(),
		}
		// A truncated varint: a protobuf parser rejects it, so every consumer
		// dead-letters the message with decode_error.
		m := &transport.Message{Topic: tp.Name, Headers: h, Payload: []byte{0x0a, 0xff, 0xff, 0xff}}
		res, err := ampybus.PublishEnvelope(ctx, b, catalog, m)
		if err != nil {
			return err
		}
		e.published(*asJSON, res, keys)
		if !*asJSON {
			fmt.Fprintf(e.stdout, "consumers of %s will dead-letter it to %s with a decode_error\n", tp.Name, ampybus.DeadLetterDomain(tp.Domain).Prefix(tp.Env)+"."+tp.Domain.Name)
		}
		return nil
	}
}

func benchPub(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, true)
	topic := fs.String("topic", "", "concrete topic, e.g. ampy.dev.bars.v1.XNAS.AAPL")
	pk := fs.String("pk", "", "partition key, as for pub-empty")
	count := fs.Int("count", 1000, "messages to publish")
	rate := fs.Float64("rate", 0, "messages per second across all workers; 0 = as fast as acks allow")
	concurrency := fs.Int("concurrency", 1, "publishers running at once")
	size := fs.Int("size", 0, "payload size in bytes, padded with a field consumers skip; 0 = the smallest payload")
	async := fs.Bool("async", false, "publish without waiting for each ack (latency is then publish→ack)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, args []string) error {
		if *count <= 0 || *concurrency <= 0 || *rate < 0 || *size < 0 {
			return usagef("--count and --concurrency must be positive, --rate and --size not negative")
		}
		tp, err := typed(*topic)
		if err != nil {
			return err
		}
		p, err := tp.Route.Skeleton(tp.Subtopic, *pk)
		if err != nil {
			return err
		}
		if *size > 0 {
			pad(p, *size)
		}
		b, err := c.open(ctx, tp.Env)
		if err != nil {
			return err
		}
		defer b.Close()
		c.note(b)
		// The first publish creates the stream; keep it out of the figures.
		if _, err := tp.Route.Publish(ctx, b, tp.Subtopic, p); err != nil {
			return err
		}
		var (
			next atomic.Int64
			res  samples
			wg   sync.WaitGroup // publishers, and async publishes awaiting their ack
		)
		res.lat = latency.New()
		var tick <-chan time.Time
		if *rate > 0 {
			t := time.NewTicker(time.Duration(float64(time.Second) / *rate))
			defer t.Stop()
			tick = t.C
		}
		prog := &progress{w: e.stderr, on: e.tty}
		start := time.Now()
		for range *concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(*count) && ctx.Err() == nil {
					if tick != nil {
						select {
						case <-tick:
						case <-ctx.Done():
							return
						}
					}
					t0 := time.Now()
					if *async {
						f, err := tp.Route.PublishAsync(ctx, b, tp.Subtopic, p)
						if err != nil {
							res.add(0, err)
							continue
						}
						wg.Add(1)
						go func() {
							defer wg.Done()
							_, err := f.Wait(ctx)
							res.add(time.Since(t0), err)
						}()
						continue
					}
					_, err := tp.Route.Publish(ctx, b, tp.Subtopic, p)
					prog.update("bench-pub %s: %d/%d", tp.Name, res.add(time.Since(t0), err), *count)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		prog.done()
		lat := res.lat
		n := int(lat.Count())
		if n == 0 {
			return fmt.Errorf("no publish succeeded: %v", res.first)
		}
		pct := func(q float64) time.Duration { return lat.Percentile(q * 100) }
		if *asJSON {
			js, _ := json.Marshal(map[string]any{
				"topic": tp.Name, "transport": b.Transport().Name(), "published": n, "failed": res.failed, "seconds": elapsed.Seconds(),
				"msgs_per_sec": float64(n) / elapsed.Seconds(), "payload_bytes": proto.Size(p), "concurrency": *concurrency, "async": *async,
				"p50_us": pct(0.50).Microseconds(), "p95_us": pct(0.95).Microseconds(), "p99_us": pct(0.99).Microseconds(),
				"p999_us": pct(0.999).Microseconds(), "max_us": lat.Max().Microseconds(),
			})
			fmt.Fprintln(e.stdout, string(js))
		} else {
			fmt.Fprintf(e.stdout, "Published %d messages in %s (%.1f msg/s) to %s on %s, %d-byte payloads, concurrency %d%s\n",
				n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), tp.Name, b.Transport().Name(), proto.Size(p), *concurrency, map[bool]string{true: ", async"}[*async])
			fmt.Fprintf(e.stdout, "latency p50 %s  p95 %s  p99 %s  p99.9 %s  max %s\n", ms(pct(0.50)), ms(pct(0.95)), ms(pct(0.99)), ms(pct(0.999)), ms(lat.Max()))
		}
		if res.failed > 0 {
			return fmt.Errorf("%d of %d publishes failed; first error: %w", res.failed, *count, res.first)
		}
		return nil
	}
}

// samples collects bench-pub's outcomes from concurrent publishers.
type samples struct {
	lat    *latency.Histogram
	mu     sync.Mutex
	ok     int
	failed int
	first  error
}

// add records one publish and returns how many have completed.
func (s *samples) add(d time.Duration, err error) int {
	if err == nil {
		s.lat.Record(d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failed++
		s.first = cmp.Or(s.first, err)
	} else {
		s.ok++
	}
	return s.ok + s.failed
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// pad grows p to about size bytes with an unknown field (number 536870911,
// the largest), which every protobuf parser skips.
func pad(p proto.Message, size int) {
	have := proto.Size(p)
	if size <= have+8 {
		return
	}
	var b []byte
	b = protowire.AppendTag(b, 536870911, protowire.BytesType)
	filler := make([]byte, size-have-8)
	for i := range filler {
		filler[i] = byte('a' + i%26)
	}
	b = protowire.AppendBytes(b, filler)
	p.ProtoReflect().SetUnknown(b)
}
