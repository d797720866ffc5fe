package natsbinding

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// MetaPartitions is the stream metadata key holding the domain's partition
// count: publishers place keys and group members split work by it, so it is
// the broker's copy, not each process's contract, that every client follows.
const MetaPartitions = "ampy_bus.partitions"

// EnsureStream creates the stream for s, or brings an existing one to the
// contract's limits. It never lowers replicas or partitions a stream already
// has: it logs the drift and keeps them. A stream that already matches is not
// updated, so many processes opening the bus at once change nothing.
func (t *Transport) EnsureStream(ctx context.Context, s transport.Stream) error {
	ctx, w, release := t.denials.guard(ctx, "$JS.API.STREAM.", "$KV.")
	defer release()
	if err := t.ensureStream(ctx, s); err != nil {
		return forbidden(w, err)
	}
	// Consumer groups keep their members in the presence bucket; whoever
	// provisions the streams provisions it, so members need no right to.
	t.mu.Lock()
	replicas := t.streams[s.Prefix].CachedInfo().Config.Replicas // what the server could give
	t.mu.Unlock()
	if _, err := t.presenceBucket(ctx, replicas); err != nil {
		return fmt.Errorf("presence bucket %s: %w", PresenceBucket, mapErr(forbidden(w, err)))
	}
	return nil
}

func (t *Transport) ensureStream(ctx context.Context, s transport.Stream) error {
	name := StreamName(s.Prefix)
	want := t.streamConfig(s)
	st, err := t.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = t.js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = t.js.Stream(ctx, name) // created meanwhile by another process
		} else if err == nil {
			return t.ensured(s.Prefix, st)
		}
	}
	if err != nil {
		return fmt.Errorf("ensure stream %s (%s.>): %w", name, s.Prefix, t.replicaErr(mapErr(err), want.Replicas))
	}
	have := st.CachedInfo().Config
	merged, drift := reconcile(have, want)
	for _, d := range drift {
		t.log.Warn("stream differs from the contract; keeping the broker's value", "stream", name, "setting", d.setting, "broker", d.broker, "contract", d.contract)
	}
	if !sameConfig(have, merged) {
		if st, err = t.js.UpdateStream(ctx, merged); err != nil {
			return fmt.Errorf("update stream %s (%s.>): %w", name, s.Prefix, t.replicaErr(mapErr(err), merged.Replicas))
		}
	}
	return t.ensured(s.Prefix, st)
}

// CheckStream implements transport.Transport: it reads the stream's info
// (its partition count), which a publisher's or consumer's rights allow.
func (t *Transport) CheckStream(ctx context.Context, s transport.Stream) error {
	if _, err := t.stream(ctx, s); err != nil {
		if errors.Is(err, transport.ErrNotFound) {
			return fmt.Errorf("%w: stream %s (%s.>) does not exist", transport.ErrNotFound, StreamName(s.Prefix), s.Prefix)
		}
		return err
	}
	return nil
}

// ensured caches the stream and its partition count.
func (t *Transport) ensured(prefix string, st jetstream.Stream) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[prefix] = st
	t.routes[prefix] = &route{
		partitions: partitionsOf(st.CachedInfo().Config),
		stream:     StreamName(prefix),
	}
	return nil
}

// replicasFor is the replica count to ask for: a server outside a cluster
// holds one copy whatever is asked.
func (t *Transport) replicasFor(want int) int {
	if want > 1 && t.nc.ConnectedClusterName() == "" {
		return 1
	}
	return max(want, 1)
}

// streamConfig is the stream the contract asks for.
func (t *Transport) streamConfig(s transport.Stream) jetstream.StreamConfig {
	replicas := t.replicasFor(s.Replicas)
	if replicas < s.Replicas {
		t.log.Info("the NATS server is not clustered; the stream holds one copy", "stream", StreamName(s.Prefix), "contract_replicas", s.Replicas)
	}
	cfg := jetstream.StreamConfig{
		Name:        StreamName(s.Prefix),
		Description: "ampy-bus " + s.Prefix,
		Subjects:    streamSubjects(s.Prefix, s.Partitions, s.Subtopics),
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      s.Retention,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  s.DedupeWindow,
		Discard:     jetstream.DiscardOld,
		Metadata:    map[string]string{MetaPartitions: strconv.Itoa(max(s.Partitions, 1))},
	}
	if s.MaxPayload > 0 {
		// JetStream counts headers in the message size; leave room for them.
		cfg.MaxMsgSize = int32(min(s.MaxPayload+HeaderAllowance, 1<<31-1))
	}
	return cfg
}

// drift is one setting where the broker keeps more than the contract asks.
type drift struct {
	setting          string
	broker, contract int
}

// reconcile returns have with the contract's limits applied: retention, size
// and dedupe window follow the contract; replicas and partitions only rise.
func reconcile(have, want jetstream.StreamConfig) (jetstream.StreamConfig, []drift) {
	out := have
	out.Description, out.MaxAge, out.MaxMsgSize, out.Duplicates = want.Description, want.MaxAge, want.MaxMsgSize, want.Duplicates
	var drifts []drift
	if have.Replicas > want.Replicas {
		drifts = append(drifts, drift{"replicas", have.Replicas, want.Replicas})
	} else {
		out.Replicas = want.Replicas
	}
	out.Metadata = maps.Clone(have.Metadata)
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	hp, wp := partitionsOf(have), partitionsOf(want)
	if _, ok := have.Metadata[MetaPartitions]; ok && hp > wp {
		drifts = append(drifts, drift{"partitions", hp, wp})
	} else {
		out.Metadata[MetaPartitions] = strconv.Itoa(wp)
	}
	// One subject per partition and subtopic shape. Shapes only accrue, as
	// partitions only rise: a process on an older contract must not refuse
	// what a newer one publishes. Subjects of earlier layouts go (prefix.>
	// without a partition token; N.prefix.> once the contract names its
	// shapes), so such a publish is refused rather than stored where no
	// consumer routes it.
	prefix, _ := prefixOfStreamSubject(want.Subjects[0])
	var shapes []string
	for _, s := range append(slices.Clone(want.Subjects), have.Subjects...) {
		if p, shape, ok := splitStreamSubject(s); ok && p == prefix && !slices.Contains(shapes, shape) {
			shapes = append(shapes, shape)
		}
	}
	if _, wantShape, _ := splitStreamSubject(want.Subjects[0]); wantShape != ">" {
		shapes = slices.DeleteFunc(shapes, func(s string) bool { return s == ">" })
	}
	shapes = transport.MergeShapes(shapes)
	slices.Sort(shapes) // one order whatever each process's contract lists
	out.Subjects = slices.DeleteFunc(slices.Clone(have.Subjects), func(s string) bool {
		p, _, ours := splitStreamSubject(s)
		return s == prefix+".>" || (ours && p == prefix)
	})
	out.Subjects = append(out.Subjects, streamSubjects(prefix, partitionsOf(out), shapes)...)
	return out, drifts
}

// partitionsOf reads a stream's partition count; a stream without one has 1.
func partitionsOf(cfg jetstream.StreamConfig) int {
	n, err := strconv.Atoi(cfg.Metadata[MetaPartitions])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// sameConfig compares the settings reconcile may change. The server adds
// its own metadata keys (_nats.*), so only ours are compared.
func sameConfig(a, b jetstream.StreamConfig) bool {
	return a.Description == b.Description && a.MaxAge == b.MaxAge && a.MaxMsgSize == b.MaxMsgSize &&
		a.Duplicates == b.Duplicates && a.Replicas == b.Replicas && slices.Equal(a.Subjects, b.Subjects) &&
		a.Metadata[MetaPartitions] == b.Metadata[MetaPartitions]
}

// JetStream error codes for a stream that cannot be placed: no peers,
// insufficient resources, replicas > 1 on a server outside a cluster.
var placementErrs = []jetstream.ErrorCode{10005, 10023, 10074}

// replicaErr explains a refusal caused by asking more replicas than the
// cluster has JetStream servers.
func (t *Transport) replicaErr(err error, replicas int) error {
	var apiErr *jetstream.APIError
	if replicas > 1 && errors.As(err, &apiErr) && slices.Contains(placementErrs, apiErr.ErrorCode) {
		return fmt.Errorf("%w: the contract asks %d replicas and the cluster %q cannot place them: add JetStream servers or lower replicas: in contract.yaml", err, replicas, t.nc.ConnectedClusterName())
	}
	return err
}
