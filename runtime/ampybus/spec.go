package ampybus

import (
	"strings"
	"time"
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

// DomainSpec is one domain as the contract states it. Generated packages
// declare one; the runtime derives streams, limits and checks from it.
type DomainSpec struct {
	Namespace  string
	Envs       []string
	Name       string
	Version    string
	QoS        string
	LatencyP99 time.Duration
	Ordering   OrderingRule
	OrderBy    string
	Retention  time.Duration
	MaxPayload int64
	// CompressAbove is the payload size above which payloads are gzipped.
	CompressAbove int64
	Partitions    int
	DedupeWindow  time.Duration
	// DeadLetter is the contract's dlq domain, where poison messages go; nil
	// means a built-in default (see DeadLetterDomain).
	DeadLetter *DomainSpec
}

// Prefix is the topic prefix of the domain in env: ampy.prod.bars.v1.
func (d *DomainSpec) Prefix(env string) string {
	return d.Namespace + "." + env + "." + d.Name + "." + d.Version
}

func (d *DomainSpec) allowsEnv(env string) bool {
	for _, e := range d.Envs {
		if e == env {
			return true
		}
	}
	return false
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
}

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

// ValidToken reports whether s can be one token of a topic: non-empty, and
// free of dots, wildcards and whitespace.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch r {
		case '.', '*', '>', ' ', '\t', '\n', '\r', '\f', '\v', 0:
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
	why := "must not contain '.', '*', '>' or whitespace"
	if e.Value == "" {
		why = "is empty"
	}
	return "subtopic parameter " + e.Param + "=" + quote(e.Value) + " " + why
}

// Is makes TokenError match ErrContract.
func (e *TokenError) Is(target error) bool { return target == ErrContract }

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
