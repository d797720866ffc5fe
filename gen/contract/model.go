// Package contract loads and validates contract.yaml, the file that states the
// whole messaging contract of a bus: domains, topics, payloads, keys, ordering
// and QoS. The generator and the tools read the contract only through it.
package contract

import (
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Contract is a loaded and validated contract.yaml.
type Contract struct {
	// File is the path the contract was read from; positions refer to it.
	File      string
	Namespace string
	Envs      []string
	QoS       []*QoSClass
	// Domains in the order the file lists them.
	Domains []*Domain
	// Services are the contract's publishers and consumers and their rights,
	// in the order the file lists them; broker permissions come from them.
	Services []*Service
	// PII is the payload fields the bus must never carry; nil when the
	// contract sets no policy.
	PII *PIIPolicy
	// Exceptions are breaking-change rules a reviewer accepted, by rule ID,
	// each with its reason (breaking: except:).
	Exceptions []Exception
}

// Exception accepts one breaking-change rule, for a stated reason.
type Exception struct {
	Rule, Reason string
	Pos          Pos
}

// Service returns the service with the given name, or nil.
func (c *Contract) Service(name string) *Service {
	for _, s := range c.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Domain returns the domain with the given name, or nil.
func (c *Contract) Domain(name string) *Domain {
	for _, d := range c.Domains {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// DomainVersion finds one major version of a domain.
func (c *Contract) DomainVersion(name, version string) *Domain {
	for _, d := range c.Domains {
		if d.Name == name && d.Version == version {
			return d
		}
	}
	return nil
}

// QoSClass is a named service level that domains refer to.
type QoSClass struct {
	Name        string
	Description string
	// LatencyP99 is the publish→first-delivery target the class promises.
	LatencyP99 time.Duration
	// PublishRetry is how long a producer keeps retrying a publish the
	// broker did not acknowledge before it reports the failure.
	PublishRetry PublishRetry
	// Priority is what a producer of the class does when a consumer group
	// falls more than MaxLag messages behind (0: it does not watch).
	Priority Priority
	MaxLag   uint64
	Pos      Pos
}

// Priority ranks QoS classes for producer backpressure (seed §8: producers
// reduce batch size or pause low-priority topics).
type Priority string

// The priorities, from never held back to first paused.
const (
	// PriorityCritical never slows or pauses; lag is only reported.
	PriorityCritical Priority = "critical"
	// PriorityHigh is never delayed; batching producers shrink their batches.
	PriorityHigh Priority = "high"
	// PriorityNormal is slowed, and batches shrink.
	PriorityNormal Priority = "normal"
	// PriorityLow is paused until the consumers catch up.
	PriorityLow Priority = "low"
)

// Priorities lists every priority in order.
var Priorities = []Priority{PriorityCritical, PriorityHigh, PriorityNormal, PriorityLow}

// PublishRetry retries an unacknowledged publish with the same message id
// (so broker dedupe makes the retry safe): exponential backoff from Backoff,
// capped at MaxBackoff, with jitter, until GiveUpAfter has passed.
type PublishRetry struct {
	Backoff, MaxBackoff, GiveUpAfter time.Duration
}

// Domain is one family of topics, ampy.{env}.{name}.{version}.{subtopic}.
// A domain listed with versions: is one Domain per major version, all of
// one Name.
type Domain struct {
	Name    string
	Version string
	// Package is the generated Go package: the name without underscores,
	// plus the version when the domain has several (tradesv1, tradesv2).
	Package     string
	Description string
	QoS         *QoSClass
	Ordering    Ordering
	// Retention is how long the broker keeps messages of this domain, in
	// every env RetentionByEnv does not name (RetentionIn).
	Retention      time.Duration
	RetentionByEnv map[string]time.Duration
	// ShortRetention is why the domain keeps less than a week in prod
	// (short_retention:); empty when it keeps at least that.
	ShortRetention string
	// MaxPayload is the largest payload the bus carries inline.
	MaxPayload int64
	// MaxInflated bounds a payload after decompression: a publish over it is
	// refused, and a consumer dead-letters a gzip that inflates past it
	// (decompression_limit) instead of filling its memory. Default 4 ×
	// MaxPayload.
	MaxInflated int64
	// CompressAbove is the payload size above which payloads are gzipped.
	CompressAbove int64
	// Partitions is the Kafka partition count for the domain's topic.
	Partitions int
	// Replicas is how many brokers hold each message: JetStream stream
	// replicas and the Kafka replication factor. Ensure never lowers it.
	Replicas int
	// DedupeWindow is how long the broker drops republished message ids.
	DedupeWindow time.Duration
	// Retry bounds how often a failing message is retried before it is dead-lettered.
	Retry     RetryPolicy
	Subtopics []*Subtopic
	Pos       Pos
}

// RetryPolicy is how a consumer retries a message whose handler failed:
// exponential backoff from Backoff, capped at MaxBackoff, with jitter; after
// MaxAttempts deliveries the message goes to the dead-letter queue.
type RetryPolicy struct {
	MaxAttempts         int
	Backoff, MaxBackoff time.Duration
}

// OrderingRule says what order a consumer may rely on within one partition key.
type OrderingRule string

// The ordering rules of the seed's delivery-semantics table.
const (
	// OrderMonotonic: per key, messages arrive monotonic in a time field (bars, ticks).
	OrderMonotonic OrderingRule = "monotonic"
	// OrderCausal: per key, strict causal order (orders: submit → amend → cancel).
	OrderCausal OrderingRule = "causal"
	// OrderLatestWins: per key, only the newest value by a time field matters (fx, signals).
	OrderLatestWins OrderingRule = "latest_wins"
	// OrderAccumulate: arrival may be out of order; every message counts (fills, news).
	OrderAccumulate OrderingRule = "accumulate"
	// OrderSnapshot: per key, snapshots monotonic in as_of (positions, universe).
	OrderSnapshot OrderingRule = "snapshot"
	// OrderCounterGauge: metric samples with counter/gauge semantics.
	OrderCounterGauge OrderingRule = "counter_gauge"
)

// OrderingRules lists every rule in documentation order.
var OrderingRules = []OrderingRule{OrderMonotonic, OrderCausal, OrderLatestWins, OrderAccumulate, OrderSnapshot, OrderCounterGauge}

// NeedsField reports whether the rule orders by a payload time field.
func (r OrderingRule) NeedsField() bool {
	return r == OrderMonotonic || r == OrderLatestWins || r == OrderSnapshot
}

// Ordering is a domain's ordering rule and, where the rule needs one, the
// payload timestamp it orders by.
type Ordering struct {
	Rule OrderingRule
	// By is the dotted path of a google.protobuf.Timestamp field or an
	// integer sequence; it may pass through repeated fields
	// (bars.event_time), in which case the newest wins.
	By string
	// Sequence says By is an integer sequence rather than a time.
	Sequence bool
	// Expires is the dotted path of the Timestamp after which a message is
	// no longer current (signals' expires_at); empty when messages do not
	// expire.
	Expires string
	// Expired is what a consumer does with a message past its expiry.
	Expired ExpiredAction
	// Restatements (snapshot rule): a newer snapshot of a key already
	// handled restates it (fundamentals), and handlers are told so.
	Restatements bool
	Pos          Pos
}

// ExpiredAction is what a consumer does with an expired message.
type ExpiredAction string

const (
	// ExpiredSkip acknowledges it without the handler and counts it.
	ExpiredSkip ExpiredAction = "skip"
	// ExpiredFlag hands it to the handler with Expired set.
	ExpiredFlag ExpiredAction = "flag"
)

// Subtopic is one concrete topic shape of a domain and the payload it carries.
type Subtopic struct {
	// Name distinguishes subtopics of one domain in generated identifiers
	// (TradePublisher); empty when the domain has only one.
	Name        string
	Description string
	Pattern     Pattern
	// Payload is the protobuf message the subtopic carries; nil for raw
	// (opaque) payloads such as the dead-letter queue's.
	Payload protoreflect.MessageDescriptor
	// PayloadName is the payload's full name as written, or "raw".
	PayloadName string
	// PayloadPos is where the payload is named.
	PayloadPos    Pos
	SchemaVersion string
	// Bind ties a subtopic parameter to the payload fields that must agree
	// with it; a path through a repeated field binds every element.
	Bind         map[string][]FieldPath
	PartitionKey *Template
	DedupeKey    *Template
	// OrderBy is the domain's ordering field resolved in this payload; empty
	// when the rule orders by no field.
	OrderBy FieldPath
	// ExpiresAt is the domain's expiry field resolved in this payload; empty
	// when its messages do not expire.
	ExpiresAt FieldPath
	Pos       Pos
}

// Raw reports whether the subtopic carries opaque bytes rather than a typed payload.
func (s *Subtopic) Raw() bool { return s.PayloadName == RawPayload }

// Pattern is a subtopic pattern such as "trade.{symbol}", split into tokens.
type Pattern struct {
	Text   string
	Tokens []Token
}

// Params returns the parameter names in the order they appear.
func (p Pattern) Params() []string {
	var out []string
	for _, t := range p.Tokens {
		if t.Param != "" {
			out = append(out, t.Param)
		}
	}
	return out
}

// Token is one dot-separated element of a pattern: a literal or a parameter.
type Token struct {
	Literal string
	Param   string
}

// Template is a key rule such as "{account_id}|{security.symbol}.{security.mic}".
type Template struct {
	Text  string
	Parts []Part
	Pos   Pos
}

// Part is one piece of a key template: literal text, a subtopic parameter or a
// payload field.
type Part struct {
	Literal string
	Param   string
	Field   FieldPath
	// Optional ({horizon?}) lets a string field be empty, a Timestamp be
	// unset, and a path through a repeated field find no element: the part
	// then adds nothing to the key instead of failing the publish.
	Optional bool
}

// FieldPath is a resolved dotted path into a payload message.
type FieldPath struct {
	Text   string
	Fields []protoreflect.FieldDescriptor
}

// Pos is a position in the contract file.
type Pos struct {
	Line, Column int
}

// Service is one deployable that publishes and consumes on the bus, with
// the rights the broker grants its identity and nothing more.
type Service struct {
	// Name is the service's identity: its NATS user and Kafka principal.
	Name        string
	Description string
	// Publishes are the subtopics it may publish to.
	Publishes []SubtopicRef
	// Consumes are the subtopics it reads and the consumer group each uses.
	Consumes []Consumption
	// Replay: it may read a domain it consumes from any point (replay
	// requests, snapshots), through consumers of its own.
	Replay bool
	// Redrive: it may read the dead-letter queues of the domains it
	// redrives and publish their messages back on the original topics.
	Redrive bool
	// Admin: it may create and update streams and topics (ensure-topic)
	// and apply ACLs.
	Admin bool
	Pos   Pos
}

// SubtopicRef names one subtopic of one domain version in a service's rights.
type SubtopicRef struct {
	Domain   *Domain
	Subtopic *Subtopic
	Pos      Pos
}

// Consumption is one subscription a service runs.
type Consumption struct {
	SubtopicRef
	Group string
}

// PIIPolicy lists field names no payload may have.
type PIIPolicy struct {
	// Forbid are glob patterns (path.Match) over a field's lower-case
	// name: "*email*", "ssn".
	Forbid []string
	Pos    Pos
}
