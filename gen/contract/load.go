package contract

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"
)

// Resolver finds payload messages by full name. *protoregistry.Files is one:
// protoregistry.GlobalFiles resolves every payload package linked into the binary.
type Resolver interface {
	FindDescriptorByName(protoreflect.FullName) (protoreflect.Descriptor, error)
}

// RawPayload is the payload value for subtopics that carry opaque bytes (the
// dead-letter queue carries each message's original payload unchanged).
const RawPayload = "raw"

// Option adjusts how a contract is loaded.
type Option func(*parser)

// WithoutPolicy loads a contract without the rules a contract must meet
// today but that are policy rather than meaning (prod retention of at least
// a week), so one written before them still reads: the previous side of a
// breaking-change review.
func WithoutPolicy() Option { return func(p *parser) { p.noPolicy = true } }

// Load reads and validates the contract at path.
func Load(path string, r Resolver, opts ...Option) (*Contract, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read contract: %w", err)
	}
	return Parse(path, data, r, opts...)
}

// Parse validates a contract held in memory; file names it in errors. It
// reports every problem at once as Errors.
func Parse(file string, data []byte, r Resolver, opts ...Option) (*Contract, error) {
	p := &parser{file: file, resolver: r}
	for _, o := range opts {
		o(p)
	}
	if e := precheck(file, data); e != nil {
		return nil, Errors{e}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if e := explainYAMLError(file, data, err); e != nil {
			return nil, Errors{e}
		}
		return nil, Errors{p.yamlError(err)}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, Errors{{File: file, Pos: Pos{1, 1}, Problem: "the contract is empty", Fix: "start with namespace:, envs:, qos:, defaults: and domains:"}}
	}
	if n := tooDeep(&doc, 0); n != nil {
		return nil, Errors{{File: file, Pos: pos(n), Problem: fmt.Sprintf("nesting deeper than %d levels", maxDepth), Fix: "a contract nests a few levels deep: check the indentation"}}
	}
	c := p.contract(doc.Content[0])
	if len(p.errs) > 0 {
		return nil, p.errs.sorted()
	}
	return c, nil
}

type parser struct {
	file      string
	namespace string // for hints: e.g. cx.trades.v1.<Message>
	envNames  []string
	noPolicy  bool // WithoutPolicy
	resolver  Resolver
	errs      Errors
	// typos records, per mapping, the keys an unknown key was taken to be a
	// misspelling of, so the missing key is not reported a second time.
	typos map[*yaml.Node]map[string]bool
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) yamlError(err error) *Error {
	// yaml.v3 names no line for a problem on the first line (its line 0).
	e := &Error{File: p.file, Pos: Pos{Line: 1}, Problem: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Fix: "fix the YAML syntax (indentation, quoting) at that line"}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		// yaml.v3 numbers parser errors ("did not find expected …") from 0 and
		// scanner errors from 1; it gives no column, so none is invented here.
		if strings.HasPrefix(m[2], "did not find expected") {
			line++
		}
		e.Pos = Pos{Line: line}
		e.Problem = "not valid YAML: " + m[2]
	}
	return e
}

func pos(n *yaml.Node) Pos { return Pos{Line: n.Line, Column: n.Column} }

func (p *parser) errorf(n *yaml.Node, fix, format string, args ...any) {
	p.errAt(pos(n), fix, format, args...)
}

func (p *parser) errAt(at Pos, fix, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Pos: at, Problem: fmt.Sprintf(format, args...), Fix: fix})
}

// entry is one key: value pair of a mapping.
type entry struct {
	key, val *yaml.Node
}

// mapping checks that n is a mapping with only the allowed keys and all the
// required ones, and returns its entries by key.
func (p *parser) mapping(n *yaml.Node, what string, allowed, required []string) map[string]entry {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, fmt.Sprintf("write %s as a mapping of key: value lines", what), "%s must be a mapping, not %s", what, kindName(n))
		return nil
	}
	out := make(map[string]entry, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if prev, dup := out[k.Value]; dup {
			p.errorf(k, "remove one of them", "key %q appears twice in %s (first at line %d)", k.Value, what, prev.key.Line)
			continue
		}
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			fix := "allowed keys: " + strings.Join(allowed, ", ")
			if s := suggest(k.Value, allowed); s != "" {
				fix = fmt.Sprintf("did you mean %q?", s)
				if p.typos == nil {
					p.typos = map[*yaml.Node]map[string]bool{}
				}
				if p.typos[n] == nil {
					p.typos[n] = map[string]bool{}
				}
				p.typos[n][s] = true
			}
			p.errorf(k, fix, "unknown key %q in %s", k.Value, what)
			continue
		}
		out[k.Value] = entry{k, v}
	}
	p.require(n, out, what, required...)
	return out
}

// require reports each required key that n lacks, unless an unknown key was
// already reported as its misspelling.
func (p *parser) require(n *yaml.Node, m map[string]entry, what string, keys ...string) {
	for _, r := range keys {
		if _, ok := m[r]; !ok && !p.typos[n][r] {
			p.errorf(n, fmt.Sprintf("add %s: to %s", r, what), "%s is missing required key %q", what, r)
		}
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("the scalar %q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "unknown"
}

func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, fmt.Sprintf("write a single value for %s", what), "%s must be a single value, not %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

var (
	identRE   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	versionRE = regexp.MustCompile(`^v[1-9][0-9]*$`)
	semverRE  = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
)

func (p *parser) ident(n *yaml.Node, what string) (string, bool) {
	s, ok := p.scalar(n, what)
	if !ok {
		return "", false
	}
	if !identRE.MatchString(s) {
		p.errorf(n, "use lower_snake_case: a letter, then letters, digits or _", "%s %q is not a valid name", what, s)
		return "", false
	}
	return s, true
}

var (
	contractKeys  = []string{"namespace", "envs", "qos", "defaults", "domains", "services", "pii", "breaking"}
	qosKeys       = []string{"latency_p99", "description", "publish_retry", "priority", "max_lag"}
	pubRetryKeys  = []string{"backoff", "max_backoff", "give_up_after"}
	limitKeys     = []string{"schema_version", "retention", "short_retention", "max_payload", "max_inflated", "compress_above", "partitions", "replicas", "dedupe_window", "retry"}
	retryKeys     = []string{"max_attempts", "backoff", "max_backoff"}
	domainKeys    = append([]string{"version", "versions", "description", "qos", "ordering", "subtopics"}, limitKeys...)
	versionKeys   = append([]string{"description", "qos", "ordering", "subtopics"}, limitKeys...)
	orderingKeys  = []string{"rule", "by", "expires", "expired", "restatements"}
	subtopicKeys  = []string{"name", "description", "pattern", "payload", "schema_version", "bind", "partition_key", "dedupe_key"}
	builtinLimits = limits{
		SchemaVersion: "1.0.0",
		Retention:     7 * 24 * time.Hour,
		MaxPayload:    1 << 20,
		CompressAbove: 128 << 10,
		Partitions:    3,
		Replicas:      1,
		DedupeWindow:  2 * time.Minute,
		Retry:         RetryPolicy{MaxAttempts: 5, Backoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second},
	}
)

func (p *parser) contract(n *yaml.Node) *Contract {
	c := &Contract{File: p.file}
	m := p.mapping(n, "the contract", contractKeys, []string{"namespace", "envs", "domains"})
	if m == nil {
		return c
	}
	if e, ok := m["namespace"]; ok {
		c.Namespace, _ = p.ident(e.val, "namespace")
		p.namespace = c.Namespace
	}
	if e, ok := m["envs"]; ok {
		c.Envs = p.envs(e.val)
		p.envNames = c.Envs
	}
	if e, ok := m["qos"]; ok {
		c.QoS = p.qosClasses(e.val)
	}
	defaults := builtinLimits
	if e, ok := m["defaults"]; ok {
		p.limits(e.val, "defaults", &defaults, limitKeys)
	}
	if e, ok := m["domains"]; ok {
		c.Domains = p.domains(e.val, c, defaults)
	}
	if e, ok := m["pii"]; ok {
		c.PII = p.pii(e.val, c)
	}
	if e, ok := m["services"]; ok {
		c.Services = p.services(e.val, c)
	}
	if e, ok := m["breaking"]; ok {
		c.Exceptions = p.exceptions(e.val)
	}
	return c
}

var ruleID = regexp.MustCompile(`^(WIRE|SEM)_[A-Z_]+$`)

// exceptions reads breaking: except: {RULE_ID: reason}.
func (p *parser) exceptions(n *yaml.Node) []Exception {
	m := p.mapping(n, "breaking", []string{"except"}, []string{"except"})
	e, ok := m["except"]
	if !ok {
		return nil
	}
	if e.val.Kind != yaml.MappingNode {
		p.errorf(e.val, "write except: as RULE_ID: reason lines", "breaking except must be a mapping, not %s", kindName(e.val))
		return nil
	}
	var out []Exception
	for i := 0; i+1 < len(e.val.Content); i += 2 {
		k, v := e.val.Content[i], e.val.Content[i+1]
		if !ruleID.MatchString(k.Value) {
			p.errorf(k, "name a rule ampybus-gen breaking reports, such as SEM_PARTITIONS_CHANGED", "%q is not a breaking-change rule ID", k.Value)
			continue
		}
		reason, ok := p.scalar(v, "the reason for excepting "+k.Value)
		if !ok || strings.TrimSpace(reason) == "" {
			if ok {
				p.errorf(v, "say why the change is safe", "the exception of %s gives no reason", k.Value)
			}
			continue
		}
		out = append(out, Exception{Rule: k.Value, Reason: reason, Pos: pos(k)})
	}
	return out
}

func (p *parser) envs(n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		p.errorf(n, "write envs: [dev, paper, prod]", "envs must be a non-empty list")
		return nil
	}
	var out []string
	for _, e := range n.Content {
		s, ok := p.ident(e, "env")
		if !ok {
			continue
		}
		if slices.Contains(out, s) {
			p.errorf(e, "remove the duplicate", "env %q is listed twice", s)
			continue
		}
		out = append(out, s)
	}
	return out
}
