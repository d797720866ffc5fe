package contract

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"
)

// Subtopics: their patterns, payload types, bound fields and the key
// templates built from them.

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
