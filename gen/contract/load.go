package contract

import (
	"cmp"
	"fmt"
	"maps"
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

// limits are the settings a domain inherits from defaults: when it omits them.
type limits struct {
	SchemaVersion string
	Retention     time.Duration
	// RetentionByEnv overrides Retention per env; RetentionPos is where the
	// retention in force was written, for errors.
	RetentionByEnv map[string]time.Duration
	RetentionPos   Pos
	// ShortRetention is why a prod retention under a week is deliberate.
	ShortRetention string
	MaxPayload     int64
	MaxInflated    int64 // 0: 4 × MaxPayload
	CompressAbove  int64
	Partitions     int
	Replicas       int
	DedupeWindow   time.Duration
	Retry          RetryPolicy
}

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

func (p *parser) qosClasses(n *yaml.Node) []*QoSClass {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "write qos: as a mapping of class name to {latency_p99: 50ms}", "qos must be a mapping, not %s", kindName(n))
		return nil
	}
	m := p.mapping(n, "qos", nil, nil)
	var out []*QoSClass
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, ok := m[k.Value]; !ok {
			continue // duplicate, already reported
		}
		name, ok := p.ident(k, "qos class")
		if !ok {
			continue
		}
		q := &QoSClass{Name: name, Pos: pos(k)}
		what := fmt.Sprintf("qos class %q", name)
		cm := p.mapping(v, what, qosKeys, []string{"latency_p99"})
		if e, ok := cm["latency_p99"]; ok {
			q.LatencyP99, _ = p.duration(e.val, what+" latency_p99")
		}
		if e, ok := cm["description"]; ok {
			q.Description, _ = p.scalar(e.val, what+" description")
		}
		q.Priority = PriorityNormal
		if e, ok := cm["priority"]; ok {
			p.priority(e.val, what, q)
		}
		if e, ok := cm["max_lag"]; ok {
			if v, ok := p.scalar(e.val, what+" max_lag"); ok {
				n, err := strconv.ParseUint(v, 10, 63)
				if err != nil || n == 0 {
					p.errorf(e.val, "write how many messages a consumer group may fall behind, e.g. 10000", "%s max_lag %q is not a message count", what, v)
				} else {
					q.MaxLag = n
				}
			}
		}
		q.PublishRetry = DefaultPublishRetry
		if e, ok := cm["publish_retry"]; ok {
			p.publishRetry(e.val, what+" publish_retry", &q.PublishRetry)
		}
		out = append(out, q)
	}
	return out
}

// limits reads the inheritable settings of defaults: or a domain into l.
func (p *parser) limits(n *yaml.Node, what string, l *limits, allowed []string) map[string]entry {
	m := p.mapping(n, what, allowed, nil)
	if e, ok := m["schema_version"]; ok {
		if s, ok := p.semver(e.val, what+" schema_version"); ok {
			l.SchemaVersion = s
		}
	}
	if e, ok := m["retention"]; ok {
		p.retention(e.val, what, l)
	}
	if e, ok := m["short_retention"]; ok {
		if s, ok := p.scalar(e.val, what+" short_retention"); ok && strings.TrimSpace(s) != "" {
			l.ShortRetention = s
		} else if ok {
			p.errorf(e.val, "say why a shorter retention is enough", "%s short_retention gives no reason", what)
		}
	}
	if e, ok := m["dedupe_window"]; ok {
		if d, ok := p.duration(e.val, what+" dedupe_window"); ok {
			l.DedupeWindow = d
		}
	}
	if e, ok := m["max_payload"]; ok {
		if s, ok := p.size(e.val, what+" max_payload"); ok {
			l.MaxPayload = s
			if s > MaxPayloadLimit {
				p.errorf(e.val, "keep messages small and send larger payloads as blob pointers (ampybus.WithBlobStore)", "%s max_payload %s is over %s, the most a NATS server carries in one message", what, FormatSize(s), FormatSize(MaxPayloadLimit))
			}
		}
	}
	if e, ok := m["compress_above"]; ok {
		if s, ok := p.size(e.val, what+" compress_above"); ok {
			l.CompressAbove = s
		}
	}
	if e, ok := m["max_inflated"]; ok {
		if s, ok := p.size(e.val, what+" max_inflated"); ok {
			l.MaxInflated = s
			if s > MaxInflatedLimit {
				p.errorf(e.val, "split such payloads: a consumer holds each one whole in memory", "%s max_inflated %s is over %s", what, FormatSize(s), FormatSize(MaxInflatedLimit))
			}
		}
	}
	if l.MaxInflated != 0 && l.MaxInflated < l.MaxPayload {
		at := n
		if e, ok := m["max_inflated"]; ok {
			at = e.val
		}
		p.errorf(at, "set max_inflated at or above max_payload", "%s inflates payloads to at most %s but max_payload is %s", what, FormatSize(l.MaxInflated), FormatSize(l.MaxPayload))
	}
	if e, ok := m["partitions"]; ok {
		if v, ok := p.scalar(e.val, what+" partitions"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				p.errorf(e.val, "write a whole number from 1 to 10000", "%s partitions %q is not a partition count", what, v)
			} else {
				l.Partitions = n
			}
		}
	}
	if e, ok := m["replicas"]; ok {
		if v, ok := p.scalar(e.val, what+" replicas"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 5 {
				p.errorf(e.val, "write 1, 3 or 5 (an odd count keeps a quorum; JetStream allows at most 5)", "%s replicas %q is not a replica count", what, v)
			} else {
				l.Replicas = n
			}
		}
	}
	if e, ok := m["retry"]; ok {
		p.retry(e.val, what+" retry", &l.Retry)
	}
	if l.CompressAbove > l.MaxPayload {
		at := n
		if e, ok := m["compress_above"]; ok {
			at = e.val
		}
		p.errorf(at, "set compress_above below max_payload", "%s compresses above %s but max_payload is %s, so compression never applies", what, FormatSize(l.CompressAbove), FormatSize(l.MaxPayload))
	}
	return m
}

// retry reads a retry: mapping over r; keys it omits keep r's values.
func (p *parser) retry(n *yaml.Node, what string, r *RetryPolicy) {
	m := p.mapping(n, what, retryKeys, nil)
	if e, ok := m["max_attempts"]; ok {
		if v, ok := p.scalar(e.val, what+" max_attempts"); ok {
			if a, err := strconv.Atoi(v); err != nil || a < 1 || a > 1000 {
				p.errorf(e.val, "write a whole number from 1 to 1000", "%s max_attempts %q is not an attempt count", what, v)
			} else {
				r.MaxAttempts = a
			}
		}
	}
	if e, ok := m["backoff"]; ok {
		if d, ok := p.duration(e.val, what+" backoff"); ok {
			r.Backoff = d
		}
	}
	if e, ok := m["max_backoff"]; ok {
		if d, ok := p.duration(e.val, what+" max_backoff"); ok {
			r.MaxBackoff = d
		}
	}
	if r.MaxBackoff < r.Backoff {
		p.errorf(n, "set max_backoff at or above backoff", "%s max_backoff %s is below backoff %s", what, r.MaxBackoff, r.Backoff)
	}
}

// DefaultPublishRetry applies to a QoS class that states no publish_retry.
var DefaultPublishRetry = PublishRetry{Backoff: 50 * time.Millisecond, MaxBackoff: time.Second, GiveUpAfter: 10 * time.Second}

func (p *parser) publishRetry(n *yaml.Node, what string, r *PublishRetry) {
	m := p.mapping(n, what, pubRetryKeys, nil)
	for _, f := range []struct {
		key string
		dst *time.Duration
	}{{"backoff", &r.Backoff}, {"max_backoff", &r.MaxBackoff}, {"give_up_after", &r.GiveUpAfter}} {
		if e, ok := m[f.key]; ok {
			if d, ok := p.duration(e.val, what+" "+f.key); ok {
				*f.dst = d
			}
		}
	}
	if r.MaxBackoff < r.Backoff {
		p.errorf(n, "set max_backoff at or above backoff", "%s max_backoff %s is below backoff %s", what, r.MaxBackoff, r.Backoff)
	}
}

// boolean reads true or false (YAML's other spellings, yes and on, are
// refused: a contract reads the same to every tool).
func (p *parser) boolean(n *yaml.Node, what string) (bool, bool) {
	s, ok := p.scalar(n, what)
	if !ok {
		return false, false
	}
	switch s {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	p.errorf(n, "write true or false", "%s %q is not true or false", what, s)
	return false, false
}

func (p *parser) semver(n *yaml.Node, what string) (string, bool) {
	s, ok := p.scalar(n, what)
	if !ok {
		return "", false
	}
	if !semverRE.MatchString(s) {
		p.errorf(n, "write MAJOR.MINOR.PATCH, e.g. 1.0.0", "%s %q is not a semantic version", what, s)
		return "", false
	}
	return s, true
}

func (p *parser) duration(n *yaml.Node, what string) (time.Duration, bool) {
	s, ok := p.scalar(n, what)
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil || d <= 0 {
		p.errorf(n, "write a positive duration such as 50ms, 2m, 36h or 7d", "%s %q is not a duration", what, s)
		return 0, false
	}
	return d, true
}

func (p *parser) size(n *yaml.Node, what string) (int64, bool) {
	s, ok := p.scalar(n, what)
	if !ok {
		return 0, false
	}
	v, err := ParseSize(s)
	if err != nil || v <= 0 {
		p.errorf(n, "write a positive size such as 131072, 128KiB or 1MiB", "%s %q is not a size", what, s)
		return 0, false
	}
	return v, true
}

func (p *parser) domains(n *yaml.Node, c *Contract, defaults limits) []*Domain {
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		p.errorf(n, "write domains: as a mapping of domain name to its definition", "domains must be a non-empty mapping")
		return nil
	}
	var out []*Domain
	keys := map[string]int{}    // domain name → line
	seen := map[string]string{} // Go package name → domain
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := p.ident(k, "domain name")
		if !ok {
			continue
		}
		if line, dup := keys[name]; dup {
			p.errorf(k, "remove or rename one of them", "duplicate domain %q (first defined at line %d)", name, line)
			continue
		}
		keys[name] = k.Line
		if prob := goNameProblem(GoPackage(name), "package"); prob != "" {
			p.errorf(k, "rename the domain: its name is its Go package as well as its topic token", "domain name %q: %s", name, prob)
			continue
		}
		for _, d := range p.domain(k, v, name, c, defaults) {
			if other, clash := seen[d.Package]; clash {
				p.errorf(k, "rename one of them", "domain %q and domain %q would both generate Go package %q", name, other, d.Package)
				continue
			}
			seen[d.Package] = name
			out = append(out, d)
		}
	}
	return out
}

// domain reads one domain entry: one Domain, or one per major version when
// it lists versions: (each in its own Go package, name plus version).
func (p *parser) domain(k, v *yaml.Node, name string, c *Contract, defaults limits) []*Domain {
	what := fmt.Sprintf("domain %q", name)
	l := defaults
	m := p.limits(v, what, &l, domainKeys)
	if m == nil {
		return []*Domain{{Name: name, Pos: pos(k), Package: GoPackage(name)}}
	}
	vs, multi := m["versions"]
	if !multi {
		p.require(v, m, what, "version", "qos", "ordering", "subtopics")
		d := &Domain{Name: name, Pos: pos(k), Package: GoPackage(name)}
		p.fillDomain(d, m, l, what, c)
		return []*Domain{d}
	}
	for _, key := range []string{"version", "subtopics"} {
		if e, ok := m[key]; ok {
			p.errorf(e.key, "move it under each version of versions:", "%s lists versions:, so %s: belongs to each version", what, key)
		}
	}
	if vs.val.Kind != yaml.MappingNode || len(vs.val.Content) == 0 {
		p.errorf(vs.val, "write versions: as a mapping of v1:, v2:, … each with its subtopics:", "%s versions must be a non-empty mapping", what)
		return nil
	}
	var out []*Domain
	for i := 0; i+1 < len(vs.val.Content); i += 2 {
		vk, vv := vs.val.Content[i], vs.val.Content[i+1]
		ver, ok := p.scalar(vk, what+" version")
		if !ok {
			continue
		}
		if !versionRE.MatchString(ver) {
			p.errorf(vk, "write v1, v2, … (the payload's major version)", "%s version %q is not a major version", what, ver)
			continue
		}
		vwhat := fmt.Sprintf("domain %q %s", name, ver)
		lv := l
		vm := p.limits(vv, vwhat, &lv, versionKeys)
		if vm == nil {
			continue
		}
		// What a version does not say, the domain does.
		merged := maps.Clone(m)
		delete(merged, "versions")
		maps.Copy(merged, vm)
		p.require(vv, merged, vwhat, "qos", "ordering", "subtopics")
		d := &Domain{Name: name, Version: ver, Pos: pos(vk), Package: GoPackage(name) + ver}
		p.fillDomain(d, merged, lv, vwhat, c)
		out = append(out, d)
	}
	return out
}

// fillDomain sets d from its entries m and inherited limits l.
func (p *parser) fillDomain(d *Domain, m map[string]entry, l limits, what string, c *Contract) {
	d.Retention, d.RetentionByEnv, d.ShortRetention = l.Retention, maps.Clone(l.RetentionByEnv), l.ShortRetention
	d.MaxPayload, d.CompressAbove = l.MaxPayload, l.CompressAbove
	defer p.checkProdRetention(d, l, what)
	d.MaxInflated = cmp.Or(l.MaxInflated, 4*l.MaxPayload)
	d.Partitions, d.Replicas, d.DedupeWindow, d.Retry = l.Partitions, l.Replicas, l.DedupeWindow, l.Retry
	if e, ok := m["version"]; ok {
		if s, ok := p.scalar(e.val, what+" version"); ok {
			if versionRE.MatchString(s) {
				d.Version = s
			} else {
				p.errorf(e.val, "write v1, v2, … (the payload's major version)", "%s version %q is not a major version", what, s)
			}
		}
	}
	if e, ok := m["description"]; ok {
		d.Description, _ = p.scalar(e.val, what+" description")
	}
	if e, ok := m["qos"]; ok {
		if s, ok := p.scalar(e.val, what+" qos"); ok {
			d.QoS = p.lookupQoS(e.val, s, c)
		}
	}
	if e, ok := m["subtopics"]; ok {
		d.Subtopics = p.subtopics(e.val, d, l.SchemaVersion)
		// A topic's version is its payloads' major: v2 carries 2.x.y.
		for _, st := range d.Subtopics {
			major, _, _ := strings.Cut(st.SchemaVersion, ".")
			if d.Version != "" && st.SchemaVersion != "" && "v"+major != d.Version {
				p.errAt(st.Pos, fmt.Sprintf("set schema_version: %s.0.0 (or a later %s.x.y) on the %s domain or the subtopic", d.Version[1:], d.Version[1:], d.Version),
					"subtopic %q of %s has schema_version %s, major %s, but its topics are %s", st.Pattern.Text, what, st.SchemaVersion, major, d.Version)
			}
		}
	}
	if e, ok := m["ordering"]; ok {
		d.Ordering = p.ordering(e.val, d)
	}
}

func (p *parser) lookupQoS(n *yaml.Node, name string, c *Contract) *QoSClass {
	var names []string
	for _, q := range c.QoS {
		if q.Name == name {
			return q
		}
		names = append(names, q.Name)
	}
	fix := "define it under qos: or use one of " + oneOf(names)
	if s := suggest(name, names); s != "" {
		fix = fmt.Sprintf("did you mean %q?", s)
	}
	if len(names) == 0 {
		fix = "define the class under the top-level qos: mapping"
	}
	p.errorf(n, fix, "unknown qos class %q", name)
	return nil
}

func (p *parser) ordering(n *yaml.Node, d *Domain) Ordering {
	o := Ordering{Pos: pos(n)}
	what := fmt.Sprintf("domain %q ordering", d.Name)
	m := p.mapping(n, what, orderingKeys, []string{"rule"})
	e, ok := m["rule"]
	if !ok {
		return o
	}
	rule, ok := p.scalar(e.val, what+" rule")
	if !ok {
		return o
	}
	var names []string
	for _, r := range OrderingRules {
		names = append(names, string(r))
		if string(r) == rule {
			o.Rule = r
		}
	}
	if o.Rule == "" {
		fix := "use one of " + oneOf(names)
		if s := suggest(rule, names); s != "" {
			fix = fmt.Sprintf("did you mean %q?", s)
		}
		p.errorf(e.val, fix, "unknown ordering rule %q", rule)
		return o
	}
	by, hasBy := m["by"]
	switch {
	case o.Rule.NeedsField() && !hasBy:
		p.errorf(e.val, "add by: with the payload timestamp it orders by, e.g. by: event_time", "ordering rule %q needs a time field", rule)
	case !o.Rule.NeedsField() && hasBy:
		p.errorf(by.key, "remove by:, or use monotonic, latest_wins or snapshot", "ordering rule %q does not order by a field", rule)
	case hasBy:
		o.By, _ = p.scalar(by.val, what+" by")
		var first *Subtopic
		for _, s := range d.Subtopics {
			if s.Raw() {
				p.errorf(by.val, "use rule accumulate or causal for raw payloads", "ordering by %q needs a typed payload, but subtopic %q carries raw bytes", o.By, s.Pattern.Text)
				continue
			}
			if s.Payload == nil {
				continue // unresolved payload, reported already
			}
			fp, err := resolvePath(s.Payload, o.By, pathOrder)
			if err != nil {
				p.errAt(pos(by.val), err.fix, "ordering by %q in %s: %s", o.By, s.Payload.FullName(), err.problem)
				continue
			}
			seq := IsSequence(fp.Fields[len(fp.Fields)-1])
			if first == nil {
				first, o.Sequence = s, seq
			} else if seq != o.Sequence {
				p.errAt(pos(by.val), "order every subtopic of the domain by the same kind of field", "ordering by %q: it is %s in %s but %s in %s", o.By, orderKind(o.Sequence), first.Payload.FullName(), orderKind(seq), s.Payload.FullName())
				continue
			}
			s.OrderBy = fp
		}
	}
	p.expiry(m, &o, d, what)
	if e, ok := m["restatements"]; ok {
		o.Restatements, _ = p.boolean(e.val, what+" restatements")
		if o.Rule != OrderSnapshot {
			p.errorf(e.key, "remove restatements:, or use rule snapshot", "%s restatements: applies to snapshots, not to rule %q", what, o.Rule)
		}
	}
	return o
}

// expiry reads ordering's expires: (a Timestamp after which a message is
// no longer current) and expired: (skip or flag).
func (p *parser) expiry(m map[string]entry, o *Ordering, d *Domain, what string) {
	ex, hasExpires := m["expires"]
	act, hasExpired := m["expired"]
	if hasExpired && !hasExpires {
		p.errorf(act.key, "add expires: with the payload Timestamp after which a message is stale, or remove expired:", "%s expired: needs expires:", what)
		return
	}
	if !hasExpires {
		return
	}
	o.Expires, _ = p.scalar(ex.val, what+" expires")
	o.Expired = ExpiredSkip
	if hasExpired {
		v, _ := p.scalar(act.val, what+" expired")
		switch ExpiredAction(v) {
		case ExpiredSkip, ExpiredFlag:
			o.Expired = ExpiredAction(v)
		default:
			p.errorf(act.val, `write skip (acknowledge it without the handler, counted in Stats.Expired) or flag (hand it over with Expired set)`, "%s expired: %q is not skip or flag", what, v)
		}
	}
	for _, s := range d.Subtopics {
		if s.Raw() {
			p.errorf(ex.val, "remove expires: from domains with raw payloads", "%s expires: needs a typed payload, but subtopic %q carries raw bytes", what, s.Pattern.Text)
			continue
		}
		if s.Payload == nil {
			continue // unresolved payload, reported already
		}
		fp, err := resolvePath(s.Payload, o.Expires, pathKey)
		if err == nil && (fp.Each() || !IsTimestamp(fp.Fields[len(fp.Fields)-1])) {
			err = &pathError{fmt.Sprintf("field %s is a %s, not a singular %s", fp.Fields[len(fp.Fields)-1].FullName(), kindLabel(fp.Fields[len(fp.Fields)-1]), timestampName), ""}
		}
		if err != nil && !strings.Contains(err.problem, " has no field ") {
			err.fix = "name the Timestamp after which a message is no longer current, such as expires_at"
		}
		if err != nil {
			p.errAt(pos(ex.val), err.fix, "%s expires: %q in %s: %s", what, o.Expires, s.Payload.FullName(), err.problem)
			continue
		}
		s.ExpiresAt = fp
	}
}

func orderKind(seq bool) string {
	if seq {
		return "an integer sequence"
	}
	return "a Timestamp"
}

func (p *parser) subtopics(n *yaml.Node, d *Domain, schemaVersion string) []*Subtopic {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		p.errorf(n, `write subtopics: as a list of {pattern: "...", payload: ..., partition_key: "..."}`, "domain %q subtopics must be a non-empty list", d.Name)
		return nil
	}
	var out []*Subtopic
	for _, sn := range n.Content {
		s := p.subtopic(sn, d, schemaVersion)
		if s == nil {
			continue
		}
		if len(n.Content) > 1 && s.Name == "" {
			p.errorf(sn, "add name: (e.g. trade) so generated identifiers can tell the subtopics apart", "domain %q has several subtopics, so each needs a name", d.Name)
		}
		for _, o := range out {
			if s.Name != "" && s.Name == o.Name {
				p.errorf(sn, "rename one of them", "subtopic name %q is used twice in domain %q (first at line %d)", s.Name, d.Name, o.Pos.Line)
			} else if s.Name != "" && goFold(s.Name) == goFold(o.Name) {
				p.errorf(sn, "rename one of them", "subtopic names %q and %q (line %d) of domain %q would generate the same Go identifiers", s.Name, o.Name, o.Pos.Line, d.Name)
			}
			if patternsOverlap(s.Pattern, o.Pattern) {
				p.errorf(sn, "add a distinct literal token (as trade.{symbol} vs quote.{symbol})", "subtopic pattern %q overlaps %q (line %d): a topic could match both, so its payload type would be ambiguous", s.Pattern.Text, o.Pattern.Text, o.Pos.Line)
			}
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) subtopic(n *yaml.Node, d *Domain, schemaVersion string) *Subtopic {
	what := fmt.Sprintf("a subtopic of domain %q", d.Name)
	m := p.mapping(n, what, subtopicKeys, []string{"pattern", "payload"})
	if m == nil {
		return nil
	}
	s := &Subtopic{Pos: pos(n), SchemaVersion: schemaVersion}
	if e, ok := m["name"]; ok {
		s.Name, _ = p.ident(e.val, "subtopic name")
	}
	e, ok := m["pattern"]
	if !ok {
		return nil
	}
	txt, ok := p.scalar(e.val, "pattern")
	if !ok {
		return nil
	}
	pat, perr := ParsePattern(txt)
	if perr != nil {
		p.errAt(within(e.val, perr.offset), perr.fix, "subtopic pattern %q: %s", txt, perr.problem)
		return nil
	}
	s.Pattern = pat
	params := pat.Params()
	for i, name := range params {
		at := within(e.val, strings.Index(txt, "{"+name+"}")+1)
		if prob := goNameProblem(name, "parameter"); prob != "" {
			p.errAt(at, "rename the parameter: it becomes a Go parameter and accessor in generated code", "subtopic pattern %q: %s", txt, prob)
		}
		for _, o := range params[:i] {
			if goFold(o) == goFold(name) {
				p.errAt(at, "rename one of them", "subtopic pattern %q: parameters {%s} and {%s} would generate the same Go identifiers", txt, o, name)
			}
		}
	}
	what = fmt.Sprintf("subtopic %q of domain %q", txt, d.Name)
	if e, ok := m["schema_version"]; ok {
		if v, ok := p.semver(e.val, what+" schema_version"); ok {
			s.SchemaVersion = v
		}
	}
	if e, ok := m["payload"]; ok {
		p.payload(e.val, s, d)
	}
	if e, ok := m["bind"]; ok {
		s.Bind = p.bind(e.val, s, what)
	}
	pk, hasPK := m["partition_key"]
	switch {
	case hasPK:
		s.PartitionKey = p.template(pk.val, s, what+" partition_key")
	case !s.Raw() && s.PayloadName != "":
		p.errorf(n, `add partition_key: built from subtopic parameters and payload fields, e.g. "{mic}.{symbol}"`, "%s has no partition_key; every typed subtopic needs one for per-key ordering", what)
	}
	if e, ok := m["dedupe_key"]; ok {
		s.DedupeKey = p.template(e.val, s, what+" dedupe_key")
	}
	if e, ok := m["description"]; ok {
		s.Description, _ = p.scalar(e.val, what+" description")
	}
	return s
}

func (p *parser) payload(n *yaml.Node, s *Subtopic, d *Domain) {
	name, ok := p.scalar(n, "payload")
	if !ok {
		return
	}
	s.PayloadName, s.PayloadPos = name, pos(n)
	if name == RawPayload {
		return
	}
	fix := fmt.Sprintf("write the full name of a protobuf message, e.g. %s.%s.%s.<Message>, or %q for opaque bytes", cmp.Or(p.namespace, "ampy"), d.Name, cmp.Or(d.Version, "v1"), RawPayload)
	if p.resolver == nil {
		p.errorf(n, "", "payload %q cannot be checked: no schema registry given", name)
		return
	}
	desc, err := p.resolver.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		p.errorf(n, fix, "payload type %q is not in the payload schemas", name)
		return
	}
	md, isMsg := desc.(protoreflect.MessageDescriptor)
	if !isMsg {
		p.errorf(n, fix, "payload %q is not a message", name)
		return
	}
	s.Payload = md
	if d.Version != "" && !strings.HasSuffix(string(md.ParentFile().Package()), "."+d.Version) {
		p.errorf(n, fmt.Sprintf("carry a %s message on a %s domain, or change the domain version", d.Version, d.Version), "payload %q is from package %s, not a %s package", name, md.ParentFile().Package(), d.Version)
	}
}

func (p *parser) bind(n *yaml.Node, s *Subtopic, what string) map[string][]FieldPath {
	m := p.mapping(n, what+" bind", nil, nil)
	if m == nil {
		return nil
	}
	params := s.Pattern.Params()
	out := map[string][]FieldPath{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(params, k.Value) {
			p.errorf(k, "bind one of the pattern's parameters: "+strings.Join(params, ", "), "bind names %q, which is not a parameter of pattern %q", k.Value, s.Pattern.Text)
			continue
		}
		paths := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			paths = v.Content
			if len(paths) == 0 {
				p.errorf(v, "list the payload fields the parameter must equal, or remove it", "bind %s lists no field", k.Value)
			}
		}
		for _, pn := range paths {
			path, ok := p.scalar(pn, "bind "+k.Value)
			if !ok || s.Payload == nil {
				if s.Raw() {
					p.errorf(pn, "remove bind: from raw subtopics", "a raw payload has no fields to bind")
				}
				continue
			}
			fp, err := resolvePath(s.Payload, path, pathString)
			if err != nil {
				p.errorf(pn, err.fix, "bind %s: %s", k.Value, err.problem)
				continue
			}
			if slices.ContainsFunc(out[k.Value], func(o FieldPath) bool { return o.Text == fp.Text }) {
				p.errorf(pn, "list each field once", "bind %s lists %s twice", k.Value, path)
				continue
			}
			out[k.Value] = append(out[k.Value], fp)
		}
	}
	return out
}

// template parses a key rule and resolves each placeholder, first as a
// subtopic parameter, then as a payload field path.
func (p *parser) template(n *yaml.Node, s *Subtopic, what string) *Template {
	txt, ok := p.scalar(n, what)
	if !ok {
		return nil
	}
	t := &Template{Text: txt, Pos: pos(n)}
	params := s.Pattern.Params()
	failed := false
	i := 0
	for i < len(txt) {
		open := strings.IndexByte(txt[i:], '{')
		close := strings.IndexByte(txt[i:], '}')
		if close >= 0 && (open < 0 || close < open) {
			p.errAt(within(n, i+close), "remove the stray } or add its {", "%s %q has an unmatched }", what, txt)
			return nil
		}
		if open < 0 {
			t.Parts = append(t.Parts, Part{Literal: txt[i:]})
			break
		}
		if open > 0 {
			t.Parts = append(t.Parts, Part{Literal: txt[i : i+open]})
		}
		start := i + open
		end := strings.IndexByte(txt[start:], '}')
		if end < 0 {
			p.errAt(within(n, start), "close the placeholder with }", "%s %q has an unclosed {", what, txt)
			return nil
		}
		name := txt[start+1 : start+end]
		i = start + end + 1
		optional := strings.HasSuffix(name, "?")
		if optional {
			name = name[:len(name)-1]
		}
		switch {
		case optional && slices.Contains(params, name):
			p.errAt(within(n, start+end-1), "remove the ?: a subtopic parameter always has a value", "%s: {%s?} marks a subtopic parameter optional", what, name)
			return nil
		case name == "":
			p.errAt(within(n, start), "name a subtopic parameter or payload field inside {}", "%s %q has an empty placeholder {}", what, txt)
			return nil
		case slices.Contains(params, name):
			t.Parts = append(t.Parts, Part{Param: name})
		case s.Raw():
			failed = true
			p.errAt(within(n, start), "use only the pattern's parameters ("+strings.Join(params, ", ")+"): raw payloads have no fields", "%s: {%s} is not a parameter of %q", what, name, s.Pattern.Text)
		case s.Payload == nil:
			failed = true // the payload type did not resolve; that is reported already
		default:
			fp, err := resolvePath(s.Payload, name, pathKey)
			if err != nil {
				failed = true
				fix := err.fix
				if len(params) > 0 {
					fix += "; subtopic parameters: " + strings.Join(params, ", ")
				}
				p.errAt(within(n, start+1), fix, "%s: {%s} is neither a parameter of %q nor a field of %s: %s", what, name, s.Pattern.Text, s.Payload.FullName(), err.problem)
				continue
			}
			if leaf := fp.Fields[len(fp.Fields)-1]; optional && leaf.Kind() != protoreflect.StringKind && !IsTimestamp(leaf) {
				failed = true
				p.errAt(within(n, start+end-1), "remove the ?: only a string or Timestamp field may be left out of a key", "%s: {%s?} is optional, but %s fields always have a value", what, name, kindLabel(leaf))
				continue
			}
			t.Parts = append(t.Parts, Part{Field: fp, Optional: optional})
		}
	}
	if failed {
		return nil
	}
	if !t.hasPlaceholder() {
		p.errorf(n, "build the key from parameters or payload fields, e.g. \"{client_order_id}\"", "%s %q is a constant: every message would share one key", what, txt)
	}
	return t
}

func (t *Template) hasPlaceholder() bool {
	for _, pt := range t.Parts {
		if pt.Literal == "" {
			return true
		}
	}
	return false
}

// within returns the position of byte offset off inside a scalar's text, so
// errors point at the placeholder rather than the start of the value.
func within(n *yaml.Node, off int) Pos {
	at := pos(n)
	if n.Line == 0 || strings.Contains(n.Value, "\n") {
		return at
	}
	switch n.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		at.Column++
	case 0, yaml.FlowStyle:
	default:
		return at
	}
	at.Column += len([]rune(n.Value[:min(off, len(n.Value))]))
	return at
}
