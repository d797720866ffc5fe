// Package breaking compares two versions of a contract, with their payload
// schemas, and reports what would break the services already running on the
// previous one: the wire (payload schemas, as buf checks them) and the
// messaging semantics no schema tool checks (keys, ordering, retention,
// partitions, limits, QoS, services' rights). Each finding has a stable rule
// ID in a category. Findings compare one domain version with itself, so a
// change made as a new major version beside the old one breaks nothing.
package breaking

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/gen/contract"
)

// Categories of rules.
const (
	Wire     = "wire"
	Semantic = "semantic"
)

// Rule IDs. They are stable: exceptions and CI logs name them.
const (
	MessageRemoved          = "WIRE_MESSAGE_REMOVED"
	FieldRemoved            = "WIRE_FIELD_REMOVED"
	FieldRenumbered         = "WIRE_FIELD_RENUMBERED"
	FieldTypeChanged        = "WIRE_FIELD_TYPE_CHANGED"
	FieldCardinalityChanged = "WIRE_FIELD_CARDINALITY_CHANGED"
	EnumValueRemoved        = "WIRE_ENUM_VALUE_REMOVED"
	OneofChanged            = "WIRE_ONEOF_CHANGED"

	DomainRemoved          = "SEM_DOMAIN_REMOVED"
	EnvRemoved             = "SEM_ENV_REMOVED"
	SubtopicRemoved        = "SEM_SUBTOPIC_REMOVED"
	SubtopicPatternChanged = "SEM_SUBTOPIC_PATTERN_CHANGED"
	PayloadTypeChanged     = "SEM_PAYLOAD_TYPE_CHANGED"
	PartitionKeyChanged    = "SEM_PARTITION_KEY_CHANGED"
	DedupeKeyChanged       = "SEM_DEDUPE_KEY_CHANGED"
	DedupeKeyRemoved       = "SEM_DEDUPE_KEY_REMOVED"
	BindAdded              = "SEM_BIND_ADDED"
	OrderingChanged        = "SEM_ORDERING_CHANGED"
	RetentionShortened     = "SEM_RETENTION_SHORTENED"
	PartitionsChanged      = "SEM_PARTITIONS_CHANGED"
	MaxPayloadLowered      = "SEM_MAX_PAYLOAD_LOWERED"
	QoSDowngraded          = "SEM_QOS_DOWNGRADED"
	ReplicasLowered        = "SEM_REPLICAS_LOWERED"
	ServiceRightsNarrowed  = "SEM_SERVICE_RIGHTS_NARROWED"

	// NewMajorVersion is a note, not a break: a domain's new major beside
	// the old one.
	NewMajorVersion = "NOTE_NEW_MAJOR_VERSION"
)

// Finding is one change.
type Finding struct {
	Rule     string `json:"rule"`
	Category string `json:"category"`
	// Breaking is false for notes and excepted rules.
	Breaking bool `json:"breaking"`
	// Excepted is the reason a reviewer accepted the change, when they did.
	Excepted string `json:"excepted,omitempty"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
	Message  string `json:"message"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s:%d:%d: %s: %s", f.File, f.Line, f.Column, f.Rule, f.Message)
	if f.Excepted != "" {
		s += " (excepted: " + f.Excepted + ")"
	}
	return s
}

type checker struct {
	prev, cur *contract.Contract
	out       []Finding
}

// at reports a finding at a position of the current contract (or of the
// previous one, for what the current one no longer has).
func (c *checker) at(file string, pos contract.Pos, rule, category string, breaking bool, format string, args ...any) {
	c.out = append(c.out, Finding{Rule: rule, Category: category, Breaking: breaking, File: file, Line: pos.Line, Column: pos.Column,
		Message: fmt.Sprintf(format, args...)})
}

func (c *checker) breakAt(pos contract.Pos, rule, category, format string, args ...any) {
	c.at(c.cur.File, pos, rule, category, true, format, args...)
}

// Check compares cur with prev. Findings come in the order of cur's file.
// A rule the current contract excepts (breaking: except:), or one in
// except (rule ID → reason, from a flag), is reported but breaks nothing.
func Check(prev, cur *contract.Contract, except ...map[string]string) []Finding {
	out := check(prev, cur)
	reasons := map[string]string{}
	for _, e := range cur.Exceptions {
		reasons[e.Rule] = e.Reason
	}
	for _, m := range except {
		for rule, reason := range m {
			reasons[rule] = reason
		}
	}
	for i, f := range out {
		if reason, ok := reasons[f.Rule]; ok && f.Breaking {
			out[i].Breaking, out[i].Excepted = false, reason
		}
	}
	return out
}

func check(prev, cur *contract.Contract) []Finding {
	c := &checker{prev: prev, cur: cur}
	for _, env := range prev.Envs {
		if !slices.Contains(cur.Envs, env) {
			c.breakAt(contract.Pos{Line: 1, Column: 1}, EnvRemoved, Semantic, "env %s was removed: its services lose every topic", env)
		}
	}
	for _, pd := range prev.Domains {
		cd := cur.DomainVersion(pd.Name, pd.Version)
		if cd == nil {
			c.at(prev.File, pd.Pos, DomainRemoved, Semantic, true, "domain %s %s was removed: its producers and consumers lose their topics", pd.Name, pd.Version)
			continue
		}
		c.domain(pd, cd)
	}
	for _, cd := range cur.Domains {
		if prev.DomainVersion(cd.Name, cd.Version) == nil && prev.Domain(cd.Name) != nil {
			c.at(cur.File, cd.Pos, NewMajorVersion, Semantic, false, "domain %s %s is a new major version beside the old one: nothing breaks until the old one is removed", cd.Name, cd.Version)
		}
	}
	c.services()
	slices.SortStableFunc(c.out, func(a, b Finding) int {
		if a.File != b.File {
			return strings.Compare(a.File, b.File)
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	return c.out
}

func (c *checker) domain(p, d *contract.Domain) {
	what := d.Name + " " + d.Version
	c.retention(what, p, d)
	if d.Partitions != p.Partitions {
		c.breakAt(d.Pos, PartitionsChanged, Semantic, "%s partitions changed from %d to %d: keys move to other partitions, and per-key order breaks across the change", what, p.Partitions, d.Partitions)
	}
	if d.MaxPayload < p.MaxPayload {
		c.breakAt(d.Pos, MaxPayloadLowered, Semantic, "%s max_payload lowered from %d to %d bytes: producers' payloads in between are refused", what, p.MaxPayload, d.MaxPayload)
	}
	if d.Replicas < p.Replicas {
		c.breakAt(d.Pos, ReplicasLowered, Semantic, "%s replicas lowered from %d to %d: fewer broker failures are survived", what, p.Replicas, d.Replicas)
	}
	if p.QoS != nil && d.QoS != nil && d.QoS.LatencyP99 > p.QoS.LatencyP99 {
		c.breakAt(d.Pos, QoSDowngraded, Semantic, "%s QoS downgraded from %s (p99 %s) to %s (p99 %s)", what, p.QoS.Name, p.QoS.LatencyP99, d.QoS.Name, d.QoS.LatencyP99)
	}
	if ordering(p.Ordering) != ordering(d.Ordering) {
		c.breakAt(d.Pos, OrderingChanged, Semantic, "%s ordering changed from %s to %s: consumers' stale and regression checks change meaning", what, ordering(p.Ordering), ordering(d.Ordering))
	}
	for _, ps := range p.Subtopics {
		cs := subtopic(d, ps.Name)
		if cs == nil {
			c.at(c.prev.File, ps.Pos, SubtopicRemoved, Semantic, true, "subtopic %s of %s was removed", label(ps), what)
			continue
		}
		c.subtopic(what, ps, cs)
	}
}

// retention reports each env whose retention shortened; one finding when
// every env shortened alike.
func (c *checker) retention(what string, p, d *contract.Domain) {
	var shorter []string
	uniform := true
	for _, env := range c.cur.Envs {
		if d.RetentionIn(env) < p.RetentionIn(env) {
			shorter = append(shorter, env)
			uniform = uniform && d.RetentionIn(env) == d.Retention && p.RetentionIn(env) == p.Retention
		}
	}
	if len(shorter) == len(c.cur.Envs) && uniform {
		c.breakAt(d.Pos, RetentionShortened, Semantic, "%s retention shortened from %s to %s: replays and late consumers lose messages", what, p.Retention, d.Retention)
		return
	}
	for _, env := range shorter {
		c.breakAt(d.Pos, RetentionShortened, Semantic, "%s retention in %s shortened from %s to %s: replays and late consumers lose messages", what, env, p.RetentionIn(env), d.RetentionIn(env))
	}
}

func ordering(o contract.Ordering) string {
	s := string(o.Rule)
	if o.By != "" {
		s += " by " + o.By
	}
	if o.Expires != "" {
		s += ", expiring at " + o.Expires + " (" + string(o.Expired) + ")"
	}
	if o.Restatements {
		s += ", with restatements"
	}
	return s
}

func subtopic(d *contract.Domain, name string) *contract.Subtopic {
	for _, s := range d.Subtopics {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func label(s *contract.Subtopic) string {
	if s.Name == "" {
		return s.Pattern.Text
	}
	return s.Name
}

func templateText(t *contract.Template) string {
	if t == nil {
		return ""
	}
	return t.Text
}

func (c *checker) subtopic(what string, p, s *contract.Subtopic) {
	what += " subtopic " + label(s)
	if p.Pattern.Text != s.Pattern.Text {
		c.breakAt(s.Pos, SubtopicPatternChanged, Semantic, "%s pattern changed from %q to %q: subscriptions and topics of the old shape stop matching", what, p.Pattern.Text, s.Pattern.Text)
	}
	if p.PayloadName != s.PayloadName {
		c.breakAt(s.PayloadPos, PayloadTypeChanged, Semantic, "%s payload changed from %s to %s within the major version: carry the new type on a new major version", what, p.PayloadName, s.PayloadName)
	} else if p.Payload != nil && s.Payload != nil {
		c.wire(s.PayloadPos, p.Payload, s.Payload)
	}
	pos := s.Pos
	if s.PartitionKey != nil {
		pos = s.PartitionKey.Pos
	}
	if templateText(p.PartitionKey) != templateText(s.PartitionKey) {
		c.breakAt(pos, PartitionKeyChanged, Semantic, "%s partition_key changed from %q to %q: keys move, and per-key order and dedupe break across the change", what, templateText(p.PartitionKey), templateText(s.PartitionKey))
	}
	for _, param := range slices.Sorted(maps.Keys(s.Bind)) {
		for _, fp := range s.Bind[param] {
			if !slices.ContainsFunc(p.Bind[param], func(o contract.FieldPath) bool { return o.Text == fp.Text }) {
				c.breakAt(s.Pos, BindAdded, Semantic, "%s binds {%s} to %s: a message that disagrees was accepted before and is now refused at publish and dead-lettered by consumers", what, param, fp.Text)
			}
		}
	}
	switch pd, cd := templateText(p.DedupeKey), templateText(s.DedupeKey); {
	case pd != "" && cd == "":
		c.breakAt(s.Pos, DedupeKeyRemoved, Semantic, "%s dedupe_key %q removed: a message re-sent under a new id is applied twice", what, pd)
	case pd != cd:
		at := s.Pos
		if s.DedupeKey != nil {
			at = s.DedupeKey.Pos
		}
		c.breakAt(at, DedupeKeyChanged, Semantic, "%s dedupe_key changed from %q to %q: consumers' dedupe stores no longer recognise what they applied", what, pd, cd)
	}
}

// wire compares a payload with its previous schema, as buf's wire rules do.
func (c *checker) wire(pos contract.Pos, prev, cur protoreflect.MessageDescriptor) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(p, m protoreflect.MessageDescriptor)
	walk = func(p, m protoreflect.MessageDescriptor) {
		if seen[p.FullName()] {
			return
		}
		seen[p.FullName()] = true
		pf, cf := p.Fields(), m.Fields()
		for i := range pf.Len() {
			f := pf.Get(i)
			g := cf.ByNumber(f.Number())
			name := string(p.FullName()) + "." + string(f.Name())
			if g == nil {
				if moved := cf.ByName(f.Name()); moved != nil {
					c.breakAt(pos, FieldRenumbered, Wire, "field %s renumbered from %d to %d", name, f.Number(), moved.Number())
				} else {
					c.breakAt(pos, FieldRemoved, Wire, "field %s (%d) removed: reserve its number and name instead", name, f.Number())
				}
				continue
			}
			if typeName(f) != typeName(g) {
				c.breakAt(pos, FieldTypeChanged, Wire, "field %s (%d) changed type from %s to %s", name, f.Number(), typeName(f), typeName(g))
				continue
			}
			if cardinality(f) != cardinality(g) {
				c.breakAt(pos, FieldCardinalityChanged, Wire, "field %s (%d) changed from %s to %s", name, f.Number(), cardinality(f), cardinality(g))
			}
			if oneof(f) != oneof(g) {
				c.breakAt(pos, OneofChanged, Wire, "field %s (%d) moved from oneof %q to %q", name, f.Number(), oneof(f), oneof(g))
			}
			if f.Enum() != nil && g.Enum() != nil {
				pv, cv := f.Enum().Values(), g.Enum().Values()
				for j := range pv.Len() {
					if cv.ByNumber(pv.Get(j).Number()) == nil {
						c.breakAt(pos, EnumValueRemoved, Wire, "enum %s value %s (%d) removed", f.Enum().FullName(), pv.Get(j).Name(), pv.Get(j).Number())
					}
				}
			}
			if f.Message() != nil && g.Message() != nil && !f.IsMap() {
				walk(f.Message(), g.Message())
			}
		}
	}
	walk(prev, cur)
	// Messages the previous payload reached that the current one does not.
	reach := func(m protoreflect.MessageDescriptor) map[protoreflect.FullName]bool {
		out := map[protoreflect.FullName]bool{}
		var rec func(protoreflect.MessageDescriptor)
		rec = func(m protoreflect.MessageDescriptor) {
			if out[m.FullName()] {
				return
			}
			out[m.FullName()] = true
			for i := range m.Fields().Len() {
				if sub := m.Fields().Get(i).Message(); sub != nil {
					rec(sub)
				}
			}
		}
		rec(m)
		return out
	}
	now := reach(cur)
	var gone []string
	for name := range reach(prev) {
		if !now[name] && !seen[name] {
			gone = append(gone, string(name))
		}
	}
	slices.Sort(gone)
	for _, g := range gone {
		c.breakAt(pos, MessageRemoved, Wire, "message %s is no longer part of the payload", g)
	}
}

func typeName(f protoreflect.FieldDescriptor) string {
	switch {
	case f.IsMap():
		return "map<" + typeName(f.MapKey()) + ", " + typeName(f.MapValue()) + ">"
	case f.Message() != nil:
		return string(f.Message().FullName())
	case f.Enum() != nil:
		return string(f.Enum().FullName())
	}
	return f.Kind().String()
}

func cardinality(f protoreflect.FieldDescriptor) string {
	switch {
	case f.IsList():
		return "repeated"
	case f.HasPresence() && f.ContainingOneof() == nil && f.Message() == nil:
		return "optional"
	}
	return "singular"
}

func oneof(f protoreflect.FieldDescriptor) string {
	if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
		return string(o.Name())
	}
	return ""
}

// services reports rights a service had and no longer has.
func (c *checker) services() {
	for _, ps := range c.prev.Services {
		cs := c.cur.Service(ps.Name)
		if cs == nil {
			c.at(c.prev.File, ps.Pos, ServiceRightsNarrowed, Semantic, true, "service %s was removed: its identity loses every right", ps.Name)
			continue
		}
		has := func(refs []contract.SubtopicRef, r contract.SubtopicRef) bool {
			return slices.ContainsFunc(refs, func(x contract.SubtopicRef) bool {
				return x.Domain.Name == r.Domain.Name && x.Domain.Version == r.Domain.Version && x.Subtopic.Name == r.Subtopic.Name
			})
		}
		// A right to a subtopic that is gone is reported with the subtopic.
		gone := func(r contract.SubtopicRef) bool {
			d := c.cur.DomainVersion(r.Domain.Name, r.Domain.Version)
			return d == nil || subtopic(d, r.Subtopic.Name) == nil
		}
		for _, r := range ps.Publishes {
			if !gone(r) && !has(cs.Publishes, r) {
				c.breakAt(cs.Pos, ServiceRightsNarrowed, Semantic, "service %s may no longer publish %s.%s %s", cs.Name, r.Domain.Name, r.Domain.Version, label(r.Subtopic))
			}
		}
		for _, r := range ps.Consumes {
			if !gone(r.SubtopicRef) && !slices.ContainsFunc(cs.Consumes, func(x contract.Consumption) bool {
				return x.Group == r.Group && x.Domain.Name == r.Domain.Name && x.Domain.Version == r.Domain.Version && x.Subtopic.Name == r.Subtopic.Name
			}) {
				c.breakAt(cs.Pos, ServiceRightsNarrowed, Semantic, "service %s may no longer consume %s.%s %s as group %s", cs.Name, r.Domain.Name, r.Domain.Version, label(r.Subtopic), r.Group)
			}
		}
		for right, lost := range map[string]bool{"replay": ps.Replay && !cs.Replay, "redrive": ps.Redrive && !cs.Redrive, "admin": ps.Admin && !cs.Admin} {
			if lost {
				c.breakAt(cs.Pos, ServiceRightsNarrowed, Semantic, "service %s lost the %s right", cs.Name, right)
			}
		}
	}
}
