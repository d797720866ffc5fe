package ampybus

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Catalog is the whole contract at run time: every domain and route. Tools
// resolve the topics and subjects people type through it, and it says what is
// wrong with one that does not fit. The generated root package declares one.
type Catalog struct {
	namespace string
	envs      []string
	domains   []*DomainSpec
	routes    map[*DomainSpec][]*AnyRoute
}

// NewCatalog is called by generated code with every domain and, per domain,
// its erased routes.
func NewCatalog(domains []*DomainSpec, routes ...[]*AnyRoute) *Catalog {
	c := &Catalog{domains: domains, routes: map[*DomainSpec][]*AnyRoute{}}
	for _, d := range domains {
		c.namespace = d.Namespace
		for _, e := range d.Envs {
			if !slices.Contains(c.envs, e) {
				c.envs = append(c.envs, e)
			}
		}
	}
	for _, rs := range routes {
		for _, r := range rs {
			c.routes[r.Spec.Domain] = append(c.routes[r.Spec.Domain], r)
		}
	}
	return c
}

// Domains lists the contract's domains in contract order.
func (c *Catalog) Domains() []*DomainSpec { return c.domains }

// Routes lists a domain's typed routes; a raw domain (dlq) has none.
func (c *Catalog) Routes(d *DomainSpec) []*AnyRoute { return c.routes[d] }

// Domain finds a domain by name; a domain with several major versions
// needs DomainVersion.
func (c *Catalog) Domain(name string) (*DomainSpec, error) {
	vs := c.versions(name)
	switch len(vs) {
	case 0:
		return nil, fmt.Errorf("%w: domain %q is not in the contract; domains are %s", ErrContract, name, c.domainNames())
	case 1:
		return vs[0], nil
	}
	return nil, fmt.Errorf("%w: domain %q has versions %s: name one", ErrContract, name, versionList(vs))
}

// DomainVersion finds one major version of a domain.
func (c *Catalog) DomainVersion(name, version string) (*DomainSpec, error) {
	vs := c.versions(name)
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: domain %q is not in the contract; domains are %s", ErrContract, name, c.domainNames())
	}
	for _, d := range vs {
		if d.Version == version {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w: the contract has %s at %s, not %s", ErrContract, name, versionList(vs), version)
}

// versions are the domains of one name, one per major version.
func (c *Catalog) versions(name string) []*DomainSpec {
	var out []*DomainSpec
	for _, d := range c.domains {
		if d.Name == name {
			out = append(out, d)
		}
	}
	return out
}

func versionList(ds []*DomainSpec) string {
	vs := make([]string, len(ds))
	for i, d := range ds {
		vs[i] = d.Version
	}
	return strings.Join(vs, " and ")
}

func (c *Catalog) domainNames() string {
	var names []string
	for _, d := range c.domains {
		if !slices.Contains(names, d.Name) {
			names = append(names, d.Name)
		}
	}
	return strings.Join(names, ", ")
}

// Topic is a concrete topic resolved against the contract.
type Topic struct {
	Name   string
	Env    string
	Domain *DomainSpec
	// Route is the subtopic's typed route; nil on a raw domain (dlq).
	Route *AnyRoute
	// Subtopic is the part after the version: XNAS.AAPL.
	Subtopic string
}

// Resolve finds the domain and route of a concrete topic such as
// ampy.prod.bars.v1.XNAS.AAPL, or says how the topic breaks the contract and
// what it should look like.
func (c *Catalog) Resolve(topic string) (Topic, error) {
	if strings.ContainsAny(topic, "*>") {
		return Topic{}, fmt.Errorf("%w: topic %q has wildcards: publish to a concrete topic (wildcards are for subscription subjects)", ErrContract, topic)
	}
	toks, err := c.head(topic, "topic")
	if err != nil {
		return Topic{}, err
	}
	if len(toks) < 5 {
		return Topic{}, fmt.Errorf("%w: topic %q has no subtopic: %s", ErrContract, topic, c.example())
	}
	ds, err := c.domainAt(topic, toks)
	if err != nil {
		return Topic{}, err
	}
	d := ds[0] // a topic names its version: wildcards were refused above
	for _, tok := range toks[4:] {
		if !ValidToken(tok) {
			return Topic{}, fmt.Errorf("%w: topic %q has an invalid token %q: tokens are printable, without wildcards or whitespace", ErrContract, topic, tok)
		}
	}
	t := Topic{Name: topic, Env: toks[1], Domain: d, Subtopic: strings.Join(toks[4:], ".")}
	routes := c.routes[d]
	if len(routes) == 0 {
		for _, shape := range c.shapes(d) {
			if transport.Match(shape, t.Subtopic) {
				return t, nil
			}
		}
		return Topic{}, fmt.Errorf("%w: topic %q: %s%s", ErrContract, topic, c.subtopicRule(d), c.nearest(d, toks, false))
	}
	var patterns []string
	for _, r := range routes {
		if _, err := r.route.Parse(t.Subtopic); err == nil {
			t.Route = r
			return t, nil
		}
		patterns = append(patterns, r.Spec.Pattern)
	}
	return Topic{}, fmt.Errorf("%w: topic %q: subtopic %q does not match the %s domain's %s%s", ErrContract, topic, t.Subtopic, d.Name, strings.Join(patterns, " or "), c.nearest(d, toks, false))
}

// deadLetters reports whether d holds other domains' dead letters: its
// subtopic is the name of the domain a dead letter came from.
func (c *Catalog) deadLetters(d *DomainSpec) bool {
	for _, o := range c.domains {
		if o.DeadLetter == d {
			return true
		}
	}
	return d.Name == "dlq" && len(c.routes[d]) == 0
}

// patterns are the subtopic patterns of d as the contract writes them; for
// a dead-letter domain, the names of the domains it holds.
func (c *Catalog) patterns(d *DomainSpec) []string {
	if c.deadLetters(d) {
		var names []string
		for _, o := range c.domains {
			if o != d {
				names = append(names, o.Name)
			}
		}
		return names
	}
	if len(d.Subtopics) > 0 {
		return d.Subtopics
	}
	var out []string
	for _, r := range c.routes[d] {
		out = append(out, r.Spec.Pattern)
	}
	if len(out) == 0 {
		out = []string{"{subtopic}"}
	}
	return out
}

// shapes are patterns with each {parameter} a *.
func (c *Catalog) shapes(d *DomainSpec) []string {
	patterns := c.patterns(d)
	out := make([]string, len(patterns))
	for i, p := range patterns {
		out[i] = shapeOf(p)
	}
	return out
}

func (c *Catalog) subtopicRule(d *DomainSpec) string {
	if c.deadLetters(d) {
		return fmt.Sprintf("the %s domain's subtopic names the domain whose dead letters it holds: one of %s", d.Name, strings.Join(c.patterns(d), ", "))
	}
	return fmt.Sprintf("the %s domain's subtopics are %s", d.Name, strings.Join(c.patterns(d), " or "))
}

// nearest suggests the valid topic (or, with wildcards, subject) closest to
// toks: each of d's patterns filled from toks where they agree, the one
// keeping most of toks winning. Parameters toks cannot fill stay {named}
// in a topic and become * in a subject. Empty when nothing comes close.
func (c *Catalog) nearest(d *DomainSpec, toks []string, wildcards bool) string {
	prefix := d.Prefix(toks[1]) // the subject's own wildcards for domain and version narrow to d
	rest := toks[min(4, len(toks)):]
	if c.deadLetters(d) {
		// A dead letter's own topic typed in full: ampy.prod.dlq.v1.ampy.prod.bars.v1.X.
		for _, tok := range rest {
			if slices.Contains(c.patterns(d), tok) {
				return fmt.Sprintf(": did you mean %s.%s?", prefix, tok)
			}
		}
		return ""
	}
	best, bestScore := "", 0
	for _, p := range c.patterns(d) {
		pt := strings.Split(p, ".")
		out := make([]string, len(pt))
		score := 0
		for i, tok := range pt {
			param := strings.HasPrefix(tok, "{")
			switch {
			case i < len(rest) && rest[i] != ">" && (param || rest[i] == tok || rest[i] == "*"):
				out[i] = rest[i]
				if !param && rest[i] == "*" {
					out[i] = tok
				}
				score++
			case param && wildcards:
				out[i] = "*"
			default:
				out[i] = tok
			}
		}
		if score > bestScore {
			best, bestScore = prefix+"."+strings.Join(out, "."), score
		}
	}
	if best == "" {
		return ""
	}
	return ": did you mean " + best + "?"
}

// Subject is a subscription subject resolved against the contract.
type Subject struct {
	Pattern string
	Env     string
	// Domains are the domains the subject can match, each its own stream.
	Domains []*DomainSpec
}

// ResolveSubject checks a subscription subject such as ampy.prod.bars.v1.>
// (NATS wildcards: * one token, a final > the rest) and finds the domains it
// spans. It must name one env, since a bus serves one.
func (c *Catalog) ResolveSubject(subject string) (Subject, error) {
	toks, err := c.head(subject, "subject")
	if err != nil {
		return Subject{}, err
	}
	for i, tok := range toks {
		if tok == ">" && i != len(toks)-1 {
			return Subject{}, fmt.Errorf("%w: subject %q: > must be the last token", ErrContract, subject)
		}
		if tok != "*" && tok != ">" && !ValidToken(tok) {
			return Subject{}, fmt.Errorf("%w: subject %q has an invalid token %q", ErrContract, subject, tok)
		}
	}
	if toks[1] == "*" || toks[1] == ">" {
		return Subject{}, fmt.Errorf("%w: subject %q must name one env (%s): a bus serves one env", ErrContract, subject, strings.Join(c.envs, ", "))
	}
	s := Subject{Pattern: subject, Env: toks[1]}
	if len(toks) > 2 && toks[2] != "*" && toks[2] != ">" {
		ds, err := c.domainAt(subject, toks)
		if err != nil {
			return Subject{}, err
		}
		if len(toks) == 3 {
			return Subject{}, fmt.Errorf("%w: subject %q stops at the domain and matches nothing: add the version and .> (%s.%s.>)", ErrContract, subject, subject, ds[len(ds)-1].Version)
		}
		if len(toks) == 4 && toks[3] != ">" {
			return Subject{}, fmt.Errorf("%w: subject %q stops at the version and matches nothing: add .> for the whole domain (%s.>)", ErrContract, subject, subject)
		}
		for _, d := range ds {
			if c.canMatch(d, toks) {
				s.Domains = append(s.Domains, d)
			}
		}
		if len(s.Domains) == 0 {
			d := ds[len(ds)-1]
			return Subject{}, fmt.Errorf("%w: subject %q matches no topic the contract allows: %s%s", ErrContract, subject, c.subtopicRule(d), c.nearest(d, toks, true))
		}
		return s, nil
	}
	var near []*DomainSpec
	for _, d := range c.domains {
		if matchesPrefix(subject, d.Prefix(s.Env)) {
			near = append(near, d)
			if c.canMatch(d, toks) {
				s.Domains = append(s.Domains, d)
			}
		}
	}
	if len(s.Domains) == 0 {
		if len(near) > 0 {
			return Subject{}, fmt.Errorf("%w: subject %q matches no topic the contract allows: no domain has subtopics of its shape%s", ErrContract, subject, c.nearest(near[0], toks, true))
		}
		return Subject{}, fmt.Errorf("%w: subject %q matches no domain of the contract", ErrContract, subject)
	}
	return s, nil
}

// canMatch reports whether the subtopic part of a subject's tokens can
// match one of d's subtopics.
func (c *Catalog) canMatch(d *DomainSpec, toks []string) bool {
	if len(toks) < 5 {
		return true // it stops at or before the version with a >
	}
	rest := strings.Join(toks[4:], ".")
	for _, shape := range c.shapes(d) {
		if transport.Overlap(rest, shape) {
			return true
		}
	}
	return false
}

// matchesPrefix reports whether pattern can match some topic under prefix.
func matchesPrefix(pattern, prefix string) bool {
	pt, xt := strings.Split(pattern, "."), strings.Split(prefix, ".")
	for i, x := range xt {
		if i >= len(pt) {
			return false
		}
		switch pt[i] {
		case ">":
			return true
		case "*", x:
		default:
			return false
		}
	}
	return len(pt) > len(xt)
}

// head checks the tokens every topic and subject starts with: the namespace
// and env, with dots as separators.
func (c *Catalog) head(s, what string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: the %s is empty: %s", ErrContract, what, c.example())
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return nil, fmt.Errorf("%w: %s %q contains whitespace", ErrContract, what, s)
	}
	toks := strings.Split(s, ".")
	if strings.Contains(s, "_") && (len(toks) < 4 || toks[0] != c.namespace || !slices.Contains(c.envs, toks[1])) {
		fixed := strings.ReplaceAll(s, "_", ".")
		var err error
		if what == "topic" {
			_, err = c.Resolve(fixed)
		} else {
			_, err = c.ResolveSubject(fixed)
		}
		if err == nil {
			return nil, fmt.Errorf("%w: %s %q uses underscores where dots belong: use %q (dots separate tokens, and wildcards match whole tokens)", ErrContract, what, s, fixed)
		}
	}
	for _, t := range toks {
		if t == "" {
			return nil, fmt.Errorf("%w: %s %q has an empty token (two dots in a row, or a dot at an end)", ErrContract, what, s)
		}
	}
	if toks[0] != c.namespace || len(toks) < 2 {
		return nil, fmt.Errorf("%w: %s %q is outside the contract: %s", ErrContract, what, s, c.example())
	}
	if toks[1] != "*" && toks[1] != ">" && !slices.Contains(c.envs, toks[1]) {
		return nil, fmt.Errorf("%w: %s %q: env %q is not in the contract; envs are %s", ErrContract, what, s, toks[1], strings.Join(c.envs, ", "))
	}
	return toks, nil
}

// domainAt resolves the domain and version tokens (toks[2], toks[3]): the
// one version named, or every version when the token is a wildcard or absent.
func (c *Catalog) domainAt(s string, toks []string) ([]*DomainSpec, error) {
	vs := c.versions(toks[2])
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: %q: domain %q is not in the contract; domains are %s", ErrContract, s, toks[2], c.domainNames())
	}
	if len(toks) < 4 || toks[3] == ">" || toks[3] == "*" {
		return vs, nil
	}
	for _, d := range vs {
		if d.Version == toks[3] {
			return []*DomainSpec{d}, nil
		}
	}
	return nil, fmt.Errorf("%w: %q: the contract has %s at %s, not %s", ErrContract, s, toks[2], versionList(vs), toks[3])
}

func (c *Catalog) example() string {
	return "topics are " + c.namespace + ".{env}.{domain}.{version}.{subtopic}, such as " + c.namespace + ".dev.bars.v1.XNAS.AAPL"
}
