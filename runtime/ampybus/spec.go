package ampybus

import (
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Version is the runtime's version. Generated code asserts a minimum with
// IsAtLeastVersion constants, so a generator newer than the runtime fails at
// compile time rather than at run time.
const Version = "0.1.0"

// IsAtLeastVersion0_1_0 is referenced by generated code: `const _ = ampybus.IsAtLeastVersion0_1_0`.
// A runtime older than the generator lacks the constant and the build fails.
const IsAtLeastVersion0_1_0 = true

// OrderingRule mirrors the contract's ordering rules.
type OrderingRule string

// Ordering rules (see contract.yaml and docs/ARCHITECTURE.md).
const (
	OrderMonotonic    OrderingRule = "monotonic"
	OrderCausal       OrderingRule = "causal"
	OrderLatestWins   OrderingRule = "latest_wins"
	OrderAccumulate   OrderingRule = "accumulate"
	OrderSnapshot     OrderingRule = "snapshot"
	OrderCounterGauge OrderingRule = "counter_gauge"
)

// Priority ranks QoS classes for producer backpressure.
type Priority string

// The priorities, from never held back to first paused.
const (
	// PriorityCritical never slows or pauses; lag is only reported.
	PriorityCritical Priority = "critical"
	// PriorityHigh is never delayed; Publisher.BatchSize shrinks.
	PriorityHigh Priority = "high"
	// PriorityNormal is slowed (WithSlowRate), and batches shrink.
	PriorityNormal Priority = "normal"
	// PriorityLow is paused until the consumers catch up, bounded by the
	// publish's context.
	PriorityLow Priority = "low"
)

// DomainSpec is one domain as the contract states it. Generated packages
// declare one; the runtime derives streams, limits and checks from it.
type DomainSpec struct {
	Namespace  string
	Envs       []string
	Name       string
	Version    string
	QoS        string
	LatencyP99 time.Duration
	// PublishRetry is the QoS class's rule for retrying an unacknowledged
	// publish; zero means DefaultPublishRetry.
	PublishRetry PublishRetry
	// Priority and MaxLag are the QoS class's backpressure rule: when one of
	// ConsumerGroups (the groups the contract's services consume the domain
	// with) is more than MaxLag messages behind, producers back off by
	// Priority. MaxLag 0: producers do not watch.
	Priority       Priority
	MaxLag         uint64
	ConsumerGroups []string
	Ordering       OrderingRule
	OrderBy        string
	// OrderBySequence says OrderBy is an integer sequence, not a time; the
	// engine compares it on the same axis (SequenceTime) and logs the number.
	OrderBySequence bool
	// ExpiresBy is the payload Timestamp after which a message is no longer
	// current ("expires_at"); empty when messages do not expire. Consumers
	// skip an expired message, counting it in Stats.Expired, or with
	// FlagExpired hand it over with Message.Expired set.
	ExpiresBy   string
	FlagExpired bool
	// Restatements (snapshot domains): a newer snapshot of a key already
	// handled restates it; the handler sees Message.Restatement.
	Restatements bool
	// Retention is how long the broker keeps the domain's messages in every
	// env RetentionByEnv does not name; RetentionIn says for one env.
	Retention      time.Duration
	RetentionByEnv map[string]time.Duration
	MaxPayload     int64
	// MaxInflated bounds a payload after decompression (0: 4 × MaxPayload).
	MaxInflated int64
	// CompressAbove is the payload size above which payloads are gzipped.
	CompressAbove int64
	Partitions    int
	// Replicas is how many brokers hold each message; 0 means 1.
	Replicas     int
	DedupeWindow time.Duration
	// Retry bounds retries of a failing message before it is dead-lettered.
	Retry RetryPolicy
	// DeadLetter is the contract's dlq domain, where poison messages go; nil
	// means a built-in default (see DeadLetterDomain).
	DeadLetter *DomainSpec
	// Subtopics are the domain's subtopic patterns as the contract writes
	// them ("{mic}.{symbol}"). The broker stores, and consumers route, only
	// topics of these shapes; empty allows any.
	Subtopics []string
}

// Shapes are the Subtopics with each {parameter} a wildcard: "*.*". A
// shape another one covers is left out (a stream's subjects must not
// overlap).
func (d *DomainSpec) Shapes() []string {
	out := make([]string, len(d.Subtopics))
	for i, p := range d.Subtopics {
		out[i] = shapeOf(p)
	}
	out = transport.Uncovered(out)
	slices.Sort(out)
	return out
}

// shapeOf is a subtopic pattern with each {parameter} a *: "{mic}.{symbol}"
// → "*.*".
func shapeOf(pattern string) string {
	toks := strings.Split(pattern, ".")
	for i, t := range toks {
		if strings.HasPrefix(t, "{") {
			toks[i] = "*"
		}
	}
	return strings.Join(toks, ".")
}

// Prefix is the topic prefix of the domain in env: ampy.prod.bars.v1.
func (d *DomainSpec) Prefix(env string) string {
	return d.Namespace + "." + env + "." + d.Name + "." + d.Version
}

// RetentionIn is how long the broker keeps the domain's messages in env.
func (d *DomainSpec) RetentionIn(env string) time.Duration {
	if r, ok := d.RetentionByEnv[env]; ok {
		return r
	}
	return d.Retention
}

func (d *DomainSpec) allowsEnv(env string) bool { return slices.Contains(d.Envs, env) }

// InflateLimit is the largest payload the domain carries decompressed:
// MaxInflated, or 4 × MaxPayload. Readers of stored bytes inflate no further.
func (d *DomainSpec) InflateLimit() int64 {
	if d.MaxInflated > 0 {
		return d.MaxInflated
	}
	return 4 * max(d.MaxPayload, 1<<20)
}

// SequenceTime places an integer sequence number on the axis the ordering
// rules compare, so a domain ordered by seq is checked, checkpointed and
// replayed as one ordered by a time. Generated code calls it.
func SequenceTime(seq int64) time.Time { return time.Unix(0, seq).UTC() }

// orderValue is what logs show for a point on the ordering axis: the
// sequence number, or the time.
func (d *DomainSpec) orderValue(t time.Time) any {
	if d.OrderBySequence {
		return t.UnixNano()
	}
	return t
}

// RetryPolicy is the contract's retry rule for a domain.
type RetryPolicy struct {
	// MaxAttempts is how many deliveries a message gets before it is dead-lettered.
	MaxAttempts int
	// Backoff is the delay before the first retry; it doubles per attempt up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
}

// DefaultRetry applies where a spec states no policy.
var DefaultRetry = RetryPolicy{MaxAttempts: 5, Backoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second}

// Delay is the wait before retrying after failed attempt n (from 1): the
// exponential step d = Backoff·2^(n-1), capped at MaxBackoff, with equal
// jitter — a random point in [d/2, d] — so retries spread out but never shrink.
func (r RetryPolicy) Delay(n int) time.Duration {
	d := r.Backoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func (r RetryPolicy) orDefault() RetryPolicy {
	if r.MaxAttempts <= 0 {
		return DefaultRetry
	}
	return r
}

// PublishRetry retries a publish the broker did not acknowledge, with the
// same message id so the broker's dedupe makes the retry safe: backoff
// doubling from Backoff up to MaxBackoff with jitter, until GiveUpAfter.
type PublishRetry struct {
	Backoff, MaxBackoff, GiveUpAfter time.Duration
}

// DefaultPublishRetry applies where a spec states no publish retry.
var DefaultPublishRetry = PublishRetry{Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, GiveUpAfter: 10 * time.Second}

func (r PublishRetry) orDefault() PublishRetry {
	if r.GiveUpAfter <= 0 {
		return DefaultPublishRetry
	}
	return r
}

// delay is the wait before retry n (from 1), with the consumer retries'
// equal jitter.
func (r PublishRetry) delay(n int) time.Duration {
	return RetryPolicy{Backoff: r.Backoff, MaxBackoff: r.MaxBackoff}.Delay(n)
}

// Schema identifies a payload type on the wire.
type Schema struct {
	// FQDN is the protobuf full name, the schema_fqdn header.
	FQDN string
	// Version is the schema's semantic version, the schema_version header.
	Version string
	// Hash fingerprints the compiled descriptor, the schema_hash header.
	Hash string
}

// SubtopicSpec is one subtopic pattern of a domain and the payload it carries.
type SubtopicSpec struct {
	Domain *DomainSpec
	// Name is the subtopic's name in the contract; empty for a domain's only subtopic.
	Name    string
	Pattern string
	Schema  Schema
	// PartitionKey and DedupeKey are the contract's key templates, such as
	// "{account_id}|{client_order_id}": for tools and error messages; the
	// generated key functions enforce them.
	PartitionKey, DedupeKey string
	// Bind ties subtopic parameters to the payload fields that must equal
	// them: symbol → security.symbol, or every bar's bars.security.symbol.
	Bind map[string][]string
}

// Shape is the subtopic's pattern with each {parameter} a wildcard
// ("trade.*"): the subscription pattern of every topic of the subtopic.
func (s *SubtopicSpec) Shape() string { return shapeOf(s.Pattern) }

// Subtopic is implemented by the generated, validated subtopic types.
type Subtopic interface {
	// String is the subtopic as it appears in the topic: XNAS.AAPL.
	String() string
}

// Keys are the keys the contract derives for one message.
type Keys struct {
	Partition string
	Dedupe    string
}

// SplitSubtopic fills into with subtopic's dot-separated tokens, without
// allocating, for generated ParseSubtopic functions; it reports false when
// the token count is not len(into).
func SplitSubtopic(subtopic string, into []string) bool {
	for i := range into {
		tok, rest, more := strings.Cut(subtopic, ".")
		if more != (i < len(into)-1) {
			return false
		}
		into[i], subtopic = tok, rest
	}
	return len(into) > 0
}

// ValidToken reports whether s can be one token of a topic: non-empty
// UTF-8, free of dots, wildcards, whitespace and control characters.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	// Symbols and venues are ASCII: checked byte by byte, on every publish.
	ascii := true
	for i := 0; i < len(s) && ascii; i++ {
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			ascii = false
		case c == '.', c == '*', c == '>', c <= ' ', c == 0x7f:
			return false
		}
	}
	if ascii {
		return true
	}
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '.', r == '*', r == '>', r < 0x20, r == 0x7f, unicode.IsSpace(r):
			return false
		}
	}
	return true
}

// TokenError says which subtopic parameter is not a valid topic token.
type TokenError struct {
	Param, Value string
}

func (e *TokenError) Error() string {
	why := "must not contain '.', '*', '>', whitespace or control characters"
	if e.Value == "" {
		why = "is empty"
	}
	return "subtopic parameter " + e.Param + "=" + quote(e.Value) + " " + why
}

// Is makes TokenError match ErrContract.
func (e *TokenError) Is(target error) bool { return target == ErrContract }

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
