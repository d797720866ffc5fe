package contract

import (
	"cmp"
	"fmt"
	"maps"
	"strings"

	"gopkg.in/yaml.v3"
)

// Domains: each version of a domain with its limits, QoS and ordering rule.

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
