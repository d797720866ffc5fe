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
		ExpiresBy: d.Ordering.Expires, FlagExpired: d.Ordering.Expired == contract.ExpiredFlag, Restatements: d.Ordering.Restatements,
		Retention: d.Retention, RetentionByEnv: d.RetentionByEnv, MaxPayload: d.MaxPayload, MaxInflated: d.MaxInflated, CompressAbove: d.CompressAbove,
		Partitions: d.Partitions, Replicas: d.Replicas, DedupeWindow: d.DedupeWindow,
		Retry: ampybus.RetryPolicy{MaxAttempts: d.Retry.MaxAttempts, Backoff: d.Retry.Backoff, MaxBackoff: d.Retry.MaxBackoff},
	}
	if d.QoS != nil {
		s.QoS, s.LatencyP99 = d.QoS.Name, d.QoS.LatencyP99
		if d.QoS.MaxLag > 0 {
			s.Priority, s.MaxLag, s.ConsumerGroups = ampybus.Priority(d.QoS.Priority), d.QoS.MaxLag, c.ConsumerGroups(d)
		}
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
		spec.Bind = map[string][]string{}
		for p, fps := range s.Bind {
			for _, fp := range fps {
				spec.Bind[p] = append(spec.Bind[p], fp.Text)
			}
		}
	}
	md := s.Payload
	newPayload := func() proto.Message { return dynamicpb.NewMessage(md) }
	parse := func(sub string) error { _, err := params(s, sub); return err }
	keys := func(sub string, p proto.Message) (ampybus.Keys, error) { return deriveKeys(s, sub, p) }
	f := ampybus.RouteFuncs{Parse: parse, Keys: keys}
	if len(s.OrderBy.Fields) > 0 {
		f.OrderTime = func(p proto.Message) time.Time { return newest(p.ProtoReflect(), s.OrderBy.Fields) }
	}
	if len(s.ExpiresAt.Fields) > 0 {
		f.ExpiresAt = func(p proto.Message) time.Time { return newest(p.ProtoReflect(), s.ExpiresAt.Fields) }
	}
	return ampybus.NewAnyRoute(spec, newPayload, f)
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
		for _, fp := range s.Bind[param] {
			err := each(m, fp.Fields, func(v protoreflect.Value, where string) error {
				if got := v.String(); got != ps[param] {
					return fmt.Errorf("%w: payload %s %q does not match subtopic {%s} %q", ampybus.ErrContract, where, got, param, ps[param])
				}
				return nil
			})
			if err != nil {
				return ampybus.Keys{}, err
			}
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
			text, err := fieldText(t, what, part, m)
			if err != nil {
				return "", err
			}
			b.WriteString(text)
		}
	}
	return b.String(), nil
}

// fieldText is a key field's text. Through repeated fields every element
// must give the same text, and one at least must have the field.
func fieldText(t *contract.Template, what string, part contract.Part, m protoreflect.Message) (string, error) {
	fd := part.Field.Fields[len(part.Field.Fields)-1]
	var text string
	seen := false
	err := each(m, part.Field.Fields, func(v protoreflect.Value, where string) error {
		var s string
		switch {
		case contract.IsTimestamp(fd):
			if (!v.IsValid() || !v.Message().IsValid()) && part.Optional {
				return nil // an element without the time says nothing about the key
			}
			if !v.IsValid() || !v.Message().IsValid() {
				return fmt.Errorf("%w: %s %s needs payload field %s, which is unset", ampybus.ErrContract, what, t.Text, where)
			}
			s = timeOf(v.Message()).Format(time.RFC3339Nano)
		case fd.Kind() == protoreflect.StringKind:
			if s = v.String(); s == "" && !part.Optional {
				return fmt.Errorf("%w: %s %s needs payload field %s, which is empty", ampybus.ErrContract, what, t.Text, where)
			}
		case fd.Kind() == protoreflect.EnumKind:
			s = enumName(fd, v.Enum())
		case fd.Kind() == protoreflect.BoolKind:
			s = strconv.FormatBool(v.Bool())
		case fd.Kind() == protoreflect.Uint32Kind, fd.Kind() == protoreflect.Fixed32Kind, fd.Kind() == protoreflect.Uint64Kind, fd.Kind() == protoreflect.Fixed64Kind:
			s = strconv.FormatUint(v.Uint(), 10)
		default:
			s = strconv.FormatInt(v.Int(), 10)
		}
		if seen && s != text {
			return fmt.Errorf("%w: %s %s needs one %s for the whole message, but %s is %q and an earlier one %q", ampybus.ErrContract, what, t.Text, part.Field.Text, where, s, text)
		}
		text, seen = s, true
		return nil
	})
	if err == nil && !seen && !part.Optional {
		err = fmt.Errorf("%w: %s %s needs payload field %s, which no element has", ampybus.ErrContract, what, t.Text, part.Field.Text)
	}
	return text, err
}

// each calls visit with every value a field path reads and where it is
// (bars[2].security.symbol): every element of a repeated field, nothing
// under a oneof member that is not set, and the zero value of the leaf
// under an unset message, as generated getters give. It stops at the first
// error.
func each(m protoreflect.Message, path []protoreflect.FieldDescriptor, visit func(v protoreflect.Value, where string) error) error {
	var walk func(m protoreflect.Message, i int, where string) error
	walk = func(m protoreflect.Message, i int, where string) error {
		fd := path[i]
		if where != "" {
			where += "."
		}
		where += string(fd.Name())
		last := i == len(path)-1
		switch {
		case fd.IsList():
			l := m.Get(fd).List()
			for j := range l.Len() {
				w := fmt.Sprintf("%s[%d]", where, j)
				var err error
				if last {
					err = visit(l.Get(j), w)
				} else {
					err = walk(l.Get(j).Message(), i+1, w)
				}
				if err != nil {
					return err
				}
			}
			return nil
		case contract.Conditional(fd, last) && !m.Has(fd):
			return nil
		case last:
			if fd.Kind() == protoreflect.MessageKind && !m.Has(fd) {
				return visit(protoreflect.Value{}, where)
			}
			return visit(m.Get(fd), where)
		}
		return walk(m.Get(fd).Message(), i+1, where)
	}
	return walk(m, 0, "")
}

// enumName is an enum value's name, or its number when the schema has none
// for it (as protoc-gen-go's String does).
func enumName(fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber) string {
	if ev := fd.Enum().Values().ByNumber(n); ev != nil {
		return string(ev.Name())
	}
	return strconv.Itoa(int(n))
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
