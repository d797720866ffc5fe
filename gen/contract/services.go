package contract

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	serviceKeys     = []string{"description", "publishes", "consumes", "may"}
	consumptionKeys = []string{"from", "group"}
	serviceRights   = []string{"replay", "redrive", "admin"}
	// Service names are identities (a NATS user, a Kafka principal, the
	// producer header's svc part): lower case, digits, - and _.
	serviceRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	// Consumer group names become JetStream durable names and Kafka group
	// ids: no wildcards or whitespace.
	groupRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// services reads the services: section. Each names what it publishes and
// consumes as subtopic references: a domain (every subtopic of every
// version), domain.subtopic, domain.vN or domain.vN.subtopic.
func (p *parser) services(n *yaml.Node, c *Contract) []*Service {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "write services: as a mapping of service name to its rights", "services must be a mapping, not %s", kindName(n))
		return nil
	}
	var out []*Service
	groups := map[string]*Service{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !serviceRE.MatchString(k.Value) {
			p.errorf(k, "use lower case letters, digits, - and _, starting with a letter (yfinance-go)", "service name %q is not valid", k.Value)
			continue
		}
		if prev := findService(out, k.Value); prev != nil {
			p.errorf(k, "remove one of them", "service %q is listed twice (first at line %d)", k.Value, prev.Pos.Line)
			continue
		}
		s := &Service{Name: k.Value, Pos: pos(k)}
		what := "service " + s.Name
		m := p.mapping(v, what, serviceKeys, nil)
		if m == nil {
			continue
		}
		if e, ok := m["description"]; ok {
			s.Description, _ = p.scalar(e.val, what+" description")
		}
		if e, ok := m["publishes"]; ok {
			for _, item := range p.list(e.val, what+" publishes") {
				s.Publishes = append(s.Publishes, p.subtopicRefs(item, c, what+" publishes")...)
			}
		}
		if e, ok := m["consumes"]; ok {
			for _, item := range p.list(e.val, what+" consumes") {
				for _, cons := range p.consumption(item, c, s) {
					if other := groups[cons.Group]; other != nil && other != s {
						p.errAt(cons.Pos, "give each service its own consumer group, so each gets every message",
							"consumer group %q of service %s is also service %s's", cons.Group, s.Name, other.Name)
						continue
					}
					if prev := sameGroup(s.Consumes, cons); prev != nil {
						p.errAt(cons.Pos, fmt.Sprintf("give %s its own group: a group reads one subtopic of a domain", cons.Subtopic.Name),
							"consumer group %q of service %s already reads %s.%s", cons.Group, s.Name, prev.Domain.Name, prev.Subtopic.Name)
						continue
					}
					groups[cons.Group] = s
					s.Consumes = append(s.Consumes, cons)
				}
			}
		}
		if e, ok := m["may"]; ok {
			for _, item := range p.list(e.val, what+" may") {
				right, ok := p.scalar(item, what+" right")
				if !ok {
					continue
				}
				switch right {
				case "replay":
					s.Replay = true
				case "redrive":
					s.Redrive = true
				case "admin":
					s.Admin = true
				default:
					fix := "the rights are " + strings.Join(serviceRights, ", ")
					if sg := suggest(right, serviceRights); sg != "" {
						fix = fmt.Sprintf("did you mean %q?", sg)
					}
					p.errorf(item, fix, "unknown right %q for %s", right, what)
				}
			}
		}
		if len(s.Publishes)+len(s.Consumes) == 0 && !s.Admin && !s.Redrive {
			p.errorf(k, "list what it publishes: or consumes:, or remove the service", "service %s neither publishes nor consumes anything", s.Name)
		}
		out = append(out, s)
	}
	return out
}

// sameGroup is the consumption of another subtopic of the same domain
// version under the same group, if any.
func sameGroup(have []Consumption, c Consumption) *Consumption {
	for i, h := range have {
		if h.Group == c.Group && h.Domain == c.Domain && h.Subtopic != c.Subtopic {
			return &have[i]
		}
	}
	return nil
}

func findService(list []*Service, name string) *Service {
	for _, s := range list {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// list returns a sequence's items; a single value stands for a list of one.
func (p *parser) list(n *yaml.Node, what string) []*yaml.Node {
	switch n.Kind {
	case yaml.SequenceNode:
		return n.Content
	case yaml.ScalarNode, yaml.MappingNode:
		if n.Tag != "!!null" {
			return []*yaml.Node{n}
		}
	}
	p.errorf(n, fmt.Sprintf("write %s as a list: [a, b]", what), "%s must be a list, not %s", what, kindName(n))
	return nil
}

// consumption reads one consumes: item: a subtopic reference (the group is
// the service's name) or {from: ref, group: name}.
func (p *parser) consumption(n *yaml.Node, c *Contract, s *Service) []Consumption {
	what := "service " + s.Name + " consumes"
	group := s.Name
	ref := n
	if n.Kind == yaml.MappingNode {
		m := p.mapping(n, what+" entry", consumptionKeys, []string{"from"})
		if m == nil {
			return nil
		}
		if e, ok := m["group"]; ok {
			g, ok := p.scalar(e.val, what+" group")
			if !ok {
				return nil
			}
			if !groupRE.MatchString(g) {
				p.errorf(e.val, "use letters, digits, ., - and _ (no wildcards or spaces)", "consumer group %q is not valid", g)
				return nil
			}
			group = g
		}
		e, ok := m["from"]
		if !ok {
			return nil
		}
		ref = e.val
	}
	var refs []SubtopicRef
	for _, item := range p.list(ref, what+" from") {
		refs = append(refs, p.subtopicRefs(item, c, what)...)
	}
	// A group reads one subtopic of a domain version (its durable consumers
	// serve one pattern): naming several gives each its own, group.subtopic.
	perDomain := map[*Domain]int{}
	for _, r := range refs {
		perDomain[r.Domain]++
	}
	var out []Consumption
	for _, r := range refs {
		g := group
		if perDomain[r.Domain] > 1 {
			g = group + "." + r.Subtopic.Name
		}
		out = append(out, Consumption{SubtopicRef: r, Group: g})
	}
	return out
}

// subtopicRefs resolves one reference to the subtopics it names.
func (p *parser) subtopicRefs(n *yaml.Node, c *Contract, what string) []SubtopicRef {
	text, ok := p.scalar(n, what+" entry")
	if !ok {
		return nil
	}
	parts := strings.Split(text, ".")
	name := parts[0]
	var versions []*Domain
	for _, d := range c.Domains {
		if d.Name == name {
			versions = append(versions, d)
		}
	}
	if len(versions) == 0 {
		var names []string
		for _, d := range c.Domains {
			names = append(names, d.Name)
		}
		fix := "the domains are " + strings.Join(slices.Compact(names), ", ")
		if s := suggest(name, names); s != "" {
			fix = fmt.Sprintf("did you mean %q?", s)
		}
		p.errorf(n, fix, "%s names %q, but the contract has no domain %q", what, text, name)
		return nil
	}
	rest := parts[1:]
	if len(rest) > 0 && versionRE.MatchString(rest[0]) {
		var kept []*Domain
		for _, d := range versions {
			if d.Version == rest[0] {
				kept = append(kept, d)
			}
		}
		if len(kept) == 0 {
			p.errorf(n, fmt.Sprintf("the versions of %s are %s", name, strings.Join(domainVersions(versions), ", ")), "%s names %q, but domain %s has no version %s", what, text, name, rest[0])
			return nil
		}
		versions, rest = kept, rest[1:]
	}
	if len(rest) > 1 {
		p.errorf(n, "write domain, domain.subtopic, domain.vN or domain.vN.subtopic", "%s entry %q has too many parts", what, text)
		return nil
	}
	var out []SubtopicRef
	for _, d := range versions {
		for _, st := range d.Subtopics {
			if len(rest) == 0 || st.Name == rest[0] {
				out = append(out, SubtopicRef{Domain: d, Subtopic: st, Pos: pos(n)})
			}
		}
	}
	if len(out) == 0 && len(rest) == 0 {
		return nil // the domain has no subtopics, which is reported there
	}
	if len(out) == 0 {
		var names []string
		for _, d := range versions {
			for _, st := range d.Subtopics {
				if st.Name != "" {
					names = append(names, st.Name)
				}
			}
		}
		fix := "domain " + name + " has one subtopic: name the domain alone"
		if len(names) > 0 {
			fix = "the subtopics of " + name + " are " + strings.Join(slices.Compact(names), ", ")
			if s := suggest(rest[0], names); s != "" {
				fix = fmt.Sprintf("did you mean %s.%s?", name, s)
			}
		}
		p.errorf(n, fix, "%s names %q, but domain %s has no subtopic %q", what, text, name, rest[0])
	}
	return out
}

func domainVersions(ds []*Domain) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Version)
	}
	return out
}
