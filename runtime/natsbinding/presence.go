package natsbinding

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// PresenceBucket is the key-value bucket where the members of every group
// announce themselves; `nats kv watch ampy_bus_members` shows who is alive.
const PresenceBucket = "ampy_bus_members"

// presence is this member's heartbeat in PresenceBucket and its view of the
// other members of its group. The view only decides which partitions a
// member asks for, spreading them evenly; the server decides who gets
// them, so two members that briefly disagree never share a partition.
type presence struct {
	kv     jetstream.KeyValue
	self   string // this member's key
	scope  string // the group's key prefix, with its final dot
	timing timing
	log    func(msg string, args ...any)
	debug  func(msg string, args ...any)

	watcher jetstream.KeyWatcher
	stop    chan struct{}
	done    chan struct{}
	// changed is signalled (without blocking) when the member set changes.
	changed chan struct{}

	mu   sync.Mutex
	seen map[string]time.Time // member key → when its last heartbeat arrived here
}

// presenceBucket opens the presence bucket, creating it when missing
// (which takes the right to create a stream: Ensure provisions it).
func (t *Transport) presenceBucket(ctx context.Context, replicas int) (jetstream.KeyValue, error) {
	kv, err := t.js.KeyValue(ctx, PresenceBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// As durable as the streams it serves; entries outlive a member by
		// a few heartbeats at most, so an hour of history is plenty.
		kv, err = t.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: PresenceBucket, Description: "ampy-bus consumer group members", History: 1,
			TTL: time.Hour, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = t.js.KeyValue(ctx, PresenceBucket)
		}
	}
	return kv, err
}

// joinPresence announces this member and starts following the group.
func joinPresence(ctx context.Context, t *Transport, st jetstream.Stream, sub transport.Subscription, tm timing) (*presence, error) {
	kv, err := t.presenceBucket(ctx, st.CachedInfo().Config.Replicas)
	if err != nil {
		return nil, fmt.Errorf("group %s: presence bucket %s: %w", sub.Group, PresenceBucket, mapErr(err))
	}
	scope := presenceScope(sub.Stream.Prefix, sub.Group)
	p := &presence{
		kv: kv, self: scope + uuid.NewString(), scope: scope, timing: tm, log: t.log.Warn, debug: t.log.Debug,
		stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}, 1),
		seen: map[string]time.Time{},
	}
	if err := p.beat(ctx); err != nil {
		return nil, fmt.Errorf("group %s: announce member: %w", sub.Group, err)
	}
	p.watcher, err = kv.Watch(ctx, scope+"*")
	if err != nil {
		return nil, fmt.Errorf("group %s: watch members: %w", sub.Group, mapErr(err))
	}
	// The watcher first replays who is there, then marks the end with nil.
	for loaded := false; !loaded; {
		select {
		case e := <-p.watcher.Updates():
			if e == nil {
				loaded = true
			} else {
				p.observe(e)
			}
		case <-ctx.Done():
			_ = p.watcher.Stop()
			return nil, fmt.Errorf("group %s: read members: %w", sub.Group, ctx.Err())
		}
	}
	go p.run()
	return p, nil
}

// beat renews this member's entry; the value says who it is, for operators.
func (p *presence) beat(ctx context.Context) error {
	host, _ := os.Hostname()
	v := fmt.Sprintf("%s pid %d, failover %s", host, os.Getpid(), 2*p.timing.dead)
	if _, err := p.kv.Put(ctx, p.self, []byte(v)); err != nil {
		return mapErr(err)
	}
	return nil
}

func (p *presence) observe(e jetstream.KeyValueEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, known := p.seen[e.Key()]
	if e.Operation() != jetstream.KeyValuePut {
		delete(p.seen, e.Key())
	} else {
		p.seen[e.Key()] = time.Now()
	}
	if known != (e.Operation() == jetstream.KeyValuePut) {
		p.signal()
	}
}

func (p *presence) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// run heartbeats, follows the others' heartbeats and forgets the silent.
func (p *presence) run() {
	defer close(p.done)
	beat := time.NewTicker(p.timing.beat)
	defer beat.Stop()
	// Silence is checked more often than members beat, so a dead member is
	// noticed soon after its dead interval.
	sweep := time.NewTicker(max(p.timing.beat/4, 25*time.Millisecond))
	defer sweep.Stop()
	for {
		select {
		case <-p.stop:
			return
		case e, ok := <-p.watcher.Updates():
			if !ok {
				return
			}
			if e != nil {
				p.observe(e)
			}
		case <-beat.C:
			ctx, cancel := context.WithTimeout(context.Background(), p.timing.beat)
			if err := p.beat(ctx); err != nil {
				p.log("nats: group heartbeat failed; retrying", "member", p.self, "err", err)
			}
			cancel()
		case <-sweep.C:
			p.expire()
		}
	}
}

// expire forgets members silent for longer than the dead interval.
func (p *presence) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, at := range p.seen {
		if k != p.self && time.Since(at) > p.timing.dead {
			p.debug("nats: group member silent; dropped", "member", k, "silent", time.Since(at))
			delete(p.seen, k)
			p.signal()
		}
	}
}

// assigned is the set of partitions this member should pull. Each
// partition goes to the live member that ranks highest for it (rendezvous
// hashing) among those not yet at their share, ⌈partitions/members⌉: every
// member gets an equal share, and when one joins or leaves most partitions
// stay where they are, so few holders change at a time.
func (p *presence) assigned(partitions int) map[int]bool {
	p.mu.Lock()
	members := make([]string, 0, len(p.seen)+1)
	for k, at := range p.seen {
		if k == p.self || time.Since(at) <= p.timing.dead {
			members = append(members, k)
		}
	}
	p.mu.Unlock()
	if !slices.Contains(members, p.self) {
		members = append(members, p.self)
	}
	return assign(members, partitions, p.self)
}

// assign is assigned's rule, for one member's view of the live members.
func assign(members []string, partitions int, self string) map[int]bool {
	share := (partitions + len(members) - 1) / len(members)
	load := map[string]int{}
	mine := map[int]bool{}
	ranked := slices.Clone(members)
	for part := range partitions {
		slices.SortFunc(ranked, func(a, b string) int {
			return cmp.Or(cmp.Compare(weight(b, part), weight(a, part)), cmp.Compare(a, b))
		})
		for _, m := range ranked {
			if load[m] < share {
				load[m]++
				if m == self {
					mine[part] = true
				}
				break
			}
		}
	}
	return mine
}

// weight ranks a member for a partition.
func weight(member string, partition int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(member))
	h.Write([]byte{'|', byte(partition), byte(partition >> 8)})
	return h.Sum64()
}

// leave removes this member at once, so the others take its partitions
// without waiting for its heartbeat to lapse.
func (p *presence) leave(ctx context.Context) {
	p.abandon()
	if err := p.kv.Delete(ctx, p.self); err != nil {
		p.log("nats: leaving the group failed; the others notice when the heartbeat lapses", "member", p.self, "err", err)
	}
}

// abandon stops heartbeating without a word, as a crashed member would.
func (p *presence) abandon() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	<-p.done
	_ = p.watcher.Stop()
}
