// Package dynamic turns a contract into a run-time ampybus.Catalog without
// generated code: payloads are dynamicpb messages of the contract's
// descriptors, and the contract's rules (subtopic patterns, bind checks,
// key templates, ordering fields) are interpreted as the generated code
// applies them. ampybusctl --contract serves any team's bus with it.
package dynamic

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// Catalog builds the catalog of c: every domain's spec, as the generator
// writes it, and an erased route for each typed subtopic.
func Catalog(c *contract.Contract) *ampybus.Catalog {
	specs := map[*contract.Domain]*ampybus.DomainSpec{}
	for _, d := range c.Domains {
		specs[d] = domainSpec(c, d)
	}
	if dlq := c.Domain("dlq"); dlq != nil {
		for d, s := range specs {
			if d != dlq {
				s.DeadLetter = specs[dlq]
			}
		}
	}
	domains := make([]*ampybus.DomainSpec, len(c.Domains))
	var routes [][]*ampybus.AnyRoute
	for i, d := range c.Domains {
		domains[i] = specs[d]
		var rs []*ampybus.AnyRoute
		for _, s := range d.Subtopics {
			if !s.Raw() {
				rs = append(rs, route(specs[d], s))
			}
		}
		routes = append(routes, rs)
	}
	return ampybus.NewCatalog(domains, routes...)
}

func domainSpec(c *contract.Contract, d *contract.Domain) *ampybus.DomainSpec {
	s := &ampybus.DomainSpec{
		Namespace: c.Namespace, Envs: c.Envs, Name: d.Name, Version: d.Version,
		Ordering: ampybus.OrderingRule(d.Ordering.Rule), OrderBy: d.Ordering.By, OrderBySequence: d.Ordering.Sequence,
		Retention: d.Retention, MaxPayload: d.MaxPayload, MaxInflated: d.MaxInflated, CompressAbove: d.CompressAbove,
		Partitions: d.Partitions, Replicas: d.Replicas, DedupeWindow: d.DedupeWindow,
		Retry: ampybus.RetryPolicy{MaxAttempts: d.Retry.MaxAttempts, Backoff: d.Retry.Backoff, MaxBackoff: d.Retry.MaxBackoff},
	}
	if d.QoS != nil {
		s.QoS, s.LatencyP99 = d.QoS.Name, d.QoS.LatencyP99
		s.PublishRetry = ampybus.PublishRetry{Backoff: d.QoS.PublishRetry.Backoff, MaxBackoff: d.QoS.PublishRetry.MaxBackoff, GiveUpAfter: d.QoS.PublishRetry.GiveUpAfter}
	}
	for _, st := range d.Subtopics {
		s.Subtopics = append(s.Subtopics, st.Pattern.Text)
	}
	return s
}

func route(d *ampybus.DomainSpec, s *contract.Subtopic) *ampybus.AnyRoute {
	spec := &ampybus.SubtopicSpec{
		Domain: d, Name: s.Name, Pattern: s.Pattern.Text,
		Schema: ampybus.Schema{FQDN: string(s.Payload.FullName()), Version: s.SchemaVersion, Hash: schema.Hash(s.Payload)},
	}
	if s.PartitionKey != nil {
		spec.PartitionKey = s.PartitionKey.Text
	}
	if s.DedupeKey != nil {
		spec.DedupeKey = s.DedupeKey.Text
	}
	if len(s.Bind) > 0 {
		spec.Bind = map[string]string{}
		for p, fp := range s.Bind {
			spec.Bind[p] = fp.Text
		}
	}
	md := s.Payload
	newPayload := func() proto.Message { return dynamicpb.NewMessage(md) }
	parse := func(sub string) error { _, err := params(s, sub); return err }
	keys := func(sub string, p proto.Message) (ampybus.Keys, error) { return deriveKeys(s, sub, p) }
	var orderTime func(proto.Message) time.Time
	if len(s.OrderBy.Fields) > 0 {
		orderTime = func(p proto.Message) time.Time { return newest(p.ProtoReflect(), s.OrderBy.Fields) }
	}
	return ampybus.NewAnyRoute(spec, newPayload, parse, keys, orderTime)
}

// params reads a subtopic's parameters as the generated Parse…Subtopic does:
// the shape first (token count and literals), then each parameter.
func params(s *contract.Subtopic, sub string) (map[string]string, error) {
	toks := strings.Split(sub, ".")
	if len(toks) != len(s.Pattern.Tokens) {
		return nil, fmt.Errorf("%w: subtopic %q does not match %s", ampybus.ErrContract, sub, s.Pattern.Text)
	}
	for i, t := range s.Pattern.Tokens {
		if t.Literal != "" && toks[i] != t.Literal {
			return nil, fmt.Errorf("%w: subtopic %q does not match %s", ampybus.ErrContract, sub, s.Pattern.Text)
		}
	}
	out := map[string]string{}
	for i, t := range s.Pattern.Tokens {
		if t.Param != "" {
			if !ampybus.ValidToken(toks[i]) {
				return nil, &ampybus.TokenError{Param: t.Param, Value: toks[i]}
			}
			out[t.Param] = toks[i]
		}
	}
	return out, nil
}

// timeOf reads a google.protobuf.Timestamp through reflection, by field
// name: its descriptor may come from a descriptor set rather than the one
// linked into this binary, and the two must not be mixed.
func timeOf(m protoreflect.Message) time.Time {
	fields := m.Descriptor().Fields()
	secs, nanos := fields.ByName("seconds"), fields.ByName("nanos")
	if secs == nil || nanos == nil {
		return time.Time{}
	}
	return time.Unix(m.Get(secs).Int(), m.Get(nanos).Int()).UTC()
}

// deriveKeys applies the bind checks and key templates to a payload, as the
// generated key function does.
func deriveKeys(s *contract.Subtopic, sub string, p proto.Message) (ampybus.Keys, error) {
	if p == nil || p.ProtoReflect().Descriptor().FullName() != s.Payload.FullName() {
		return ampybus.Keys{}, fmt.Errorf("%w: %s carries %s", ampybus.ErrContract, s.Pattern.Text, s.Payload.FullName())
	}
	ps, err := params(s, sub)
	if err != nil {
		return ampybus.Keys{}, err
	}
	m := p.ProtoReflect()
	for _, param := range slices.Sorted(maps.Keys(s.Bind)) { // the generated order
		fp := s.Bind[param]
		if got := leaf(m, fp.Fields).String(); got != ps[param] {
			return ampybus.Keys{}, fmt.Errorf("%w: payload %s %q does not match subtopic {%s} %q", ampybus.ErrContract, fp.Text, got, param, ps[param])
		}
	}
	var k ampybus.Keys
	if k.Partition, err = render(s.PartitionKey, "partition_key", ps, m); err != nil {
		return ampybus.Keys{}, err
	}
	if s.DedupeKey != nil {
		if k.Dedupe, err = render(s.DedupeKey, "dedupe_key", ps, m); err != nil {
			return ampybus.Keys{}, err
		}
	}
	return k, nil
}

func render(t *contract.Template, what string, ps map[string]string, m protoreflect.Message) (string, error) {
	var b strings.Builder
	for _, part := range t.Parts {
		switch {
		case part.Literal != "":
			b.WriteString(part.Literal)
		case part.Param != "":
			b.WriteString(ps[part.Param])
		default:
			fd := part.Field.Fields[len(part.Field.Fields)-1]
			v := leaf(m, part.Field.Fields)
			switch {
			case contract.IsTimestamp(fd):
				if !v.IsValid() || !v.Message().IsValid() {
					return "", fmt.Errorf("%w: %s %s needs payload field %s, which is unset", ampybus.ErrContract, what, t.Text, part.Field.Text)
				}
				b.WriteString(timeOf(v.Message()).Format(time.RFC3339Nano))
			case fd.Kind() == protoreflect.StringKind:
				if v.String() == "" {
					return "", fmt.Errorf("%w: %s %s needs payload field %s, which is empty", ampybus.ErrContract, what, t.Text, part.Field.Text)
				}
				b.WriteString(v.String())
			case fd.Kind() == protoreflect.EnumKind:
				b.WriteString(enumName(fd, v.Enum()))
			case fd.Kind() == protoreflect.BoolKind:
				b.WriteString(strconv.FormatBool(v.Bool()))
			case fd.Kind() == protoreflect.Uint32Kind, fd.Kind() == protoreflect.Fixed32Kind, fd.Kind() == protoreflect.Uint64Kind, fd.Kind() == protoreflect.Fixed64Kind:
				b.WriteString(strconv.FormatUint(v.Uint(), 10))
			default:
				b.WriteString(strconv.FormatInt(v.Int(), 10))
			}
		}
	}
	return b.String(), nil
}

// enumName is an enum value's name, or its number when the schema has none
// for it (as protoc-gen-go's String does).
func enumName(fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber) string {
	if ev := fd.Enum().Values().ByNumber(n); ev != nil {
		return string(ev.Name())
	}
	return strconv.Itoa(int(n))
}

// leaf reads a singular field path; the zero value of the leaf's kind when
// a message on the way is unset, as generated getters give.
func leaf(m protoreflect.Message, path []protoreflect.FieldDescriptor) protoreflect.Value {
	last := path[len(path)-1]
	for _, fd := range path[:len(path)-1] {
		if !m.Has(fd) {
			if last.Kind() == protoreflect.MessageKind {
				return protoreflect.Value{}
			}
			return last.Default()
		}
		m = m.Get(fd).Message()
	}
	if last.Kind() == protoreflect.MessageKind && !m.Has(last) {
		return protoreflect.Value{}
	}
	return m.Get(last)
}

// newest is the latest point on the ordering axis along a path that may pass
// through repeated fields: a Timestamp's time, or a sequence number's
// SequenceTime (0 is none).
func newest(m protoreflect.Message, path []protoreflect.FieldDescriptor) time.Time {
	var out time.Time
	var walk func(m protoreflect.Message, path []protoreflect.FieldDescriptor)
	visit := func(v protoreflect.Value, fd protoreflect.FieldDescriptor, rest []protoreflect.FieldDescriptor) {
		if len(rest) > 0 {
			walk(v.Message(), rest)
			return
		}
		var t time.Time
		switch {
		case contract.IsTimestamp(fd):
			t = timeOf(v.Message())
		case fd.Kind() == protoreflect.Uint32Kind, fd.Kind() == protoreflect.Fixed32Kind, fd.Kind() == protoreflect.Uint64Kind, fd.Kind() == protoreflect.Fixed64Kind:
			if v.Uint() != 0 {
				t = ampybus.SequenceTime(int64(v.Uint()))
			}
		default:
			if v.Int() != 0 {
				t = ampybus.SequenceTime(v.Int())
			}
		}
		if t.After(out) {
			out = t
		}
	}
	walk = func(m protoreflect.Message, path []protoreflect.FieldDescriptor) {
		fd := path[0]
		if !m.Has(fd) {
			return
		}
		if fd.IsList() {
			l := m.Get(fd).List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i), fd, path[1:])
			}
			return
		}
		visit(m.Get(fd), fd, path[1:])
	}
	walk(m, path)
	return out
}
