package contract

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Typed scalars: booleans, semantic versions, durations and sizes, each
// refused with where it was written and how to write it.

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
