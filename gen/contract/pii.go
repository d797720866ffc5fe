package contract

import (
	"fmt"
	"path"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"
)

var piiKeys = []string{"forbid"}

// pii reads the pii: section and holds every typed payload to it: a field
// whose name matches a forbidden pattern, at any depth, is refused at the
// subtopic's payload line. The bus must not carry personal data, and a
// schema that could is stopped before any code is generated for it.
func (p *parser) pii(n *yaml.Node, c *Contract) *PIIPolicy {
	m := p.mapping(n, "pii", piiKeys, []string{"forbid"})
	if m == nil {
		return nil
	}
	e, ok := m["forbid"]
	if !ok {
		return nil
	}
	pol := &PIIPolicy{Pos: pos(e.key)}
	for _, item := range p.list(e.val, "pii forbid") {
		pat, ok := p.scalar(item, "pii forbid pattern")
		if !ok {
			continue
		}
		pat = strings.ToLower(pat)
		if _, err := path.Match(pat, ""); err != nil || pat == "" || strings.Contains(pat, ".") {
			p.errorf(item, "write a field name or a glob over one, such as email or *phone*", "pii pattern %q is not a field-name pattern", pat)
			continue
		}
		pol.Forbid = append(pol.Forbid, pat)
	}
	for _, d := range c.Domains {
		for _, s := range d.Subtopics {
			if s.Payload == nil {
				continue
			}
			seen := map[protoreflect.FullName]bool{}
			p.checkPII(s, s.Payload, "", pol, seen)
		}
	}
	return pol
}

func (p *parser) checkPII(s *Subtopic, md protoreflect.MessageDescriptor, prefix string, pol *PIIPolicy, seen map[protoreflect.FullName]bool) {
	if seen[md.FullName()] {
		return // a recursive message is checked once
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		name := string(f.Name())
		if pat := pol.match(name); pat != "" {
			p.errAt(s.PayloadPos, fmt.Sprintf("remove or rename the field in %s, or carry a reference (an id) instead of the data", f.ParentFile().Path()),
				"payload %s has field %s%s, which the pii policy forbids (pattern %q at line %d): personal data must not travel on the bus",
				s.Payload.FullName(), prefix, name, pat, pol.Pos.Line)
		}
		if f.Message() != nil && !strings.HasPrefix(string(f.Message().FullName()), "google.protobuf.") {
			p.checkPII(s, f.Message(), prefix+name+".", pol, seen)
		}
	}
}

// match returns the pattern a field name matches, or "".
func (pol *PIIPolicy) match(field string) string {
	field = strings.ToLower(field)
	for _, pat := range pol.Forbid {
		if ok, _ := path.Match(pat, field); ok {
			return pat
		}
	}
	return ""
}
