package contract

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The seed asks for at least a week of live messages in production; the
// loader refuses less in the env named ProdEnv unless the contract says
// why (short_retention:).
const (
	ProdEnv          = "prod"
	MinProdRetention = 7 * 24 * time.Hour
)

// RetentionIn is how long the broker keeps the domain's messages in env.
func (d *Domain) RetentionIn(env string) time.Duration {
	if r, ok := d.RetentionByEnv[env]; ok {
		return r
	}
	return d.Retention
}

// retention reads retention: as one duration for every env (7d) or per env
// ({default: 3d, prod: 7d}); an env a mapping does not name keeps what it
// inherits, unless the mapping gives a default.
func (p *parser) retention(n *yaml.Node, what string, l *limits) {
	l.RetentionPos = pos(n)
	if n.Kind == yaml.ScalarNode {
		if d, ok := p.duration(n, what+" retention"); ok {
			l.Retention, l.RetentionByEnv = d, nil
		}
		return
	}
	m := p.mapping(n, what+" retention", nil, nil)
	if m == nil {
		return
	}
	byEnv := maps.Clone(l.RetentionByEnv)
	if e, ok := m["default"]; ok {
		if d, ok := p.duration(e.val, what+" retention default"); ok {
			l.Retention, byEnv = d, nil
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "default" {
			continue
		}
		if !slices.Contains(p.envNames, k.Value) {
			p.errorf(k, "name one of the contract's envs ("+strings.Join(p.envNames, ", ")+") or default", "%s retention names %q, which is not an env", what, k.Value)
			continue
		}
		if d, ok := p.duration(v, fmt.Sprintf("%s retention in %s", what, k.Value)); ok {
			if byEnv == nil {
				byEnv = map[string]time.Duration{}
			}
			byEnv[k.Value] = d
		}
	}
	l.RetentionByEnv = byEnv
}

// checkProdRetention refuses a domain that keeps less than the seed's week
// in production, unless it says why.
func (p *parser) checkProdRetention(d *Domain, l limits, what string) {
	if p.noPolicy || !slices.Contains(p.envNames, ProdEnv) || l.ShortRetention != "" {
		return
	}
	if r := d.RetentionIn(ProdEnv); r < MinProdRetention {
		p.errAt(l.RetentionPos, fmt.Sprintf("keep at least 7d in %s (retention: {%s: 7d}), or say why less is enough with short_retention: <reason>", ProdEnv, ProdEnv),
			"%s keeps %s in %s, under the seed's week of live messages", what, FormatDuration(r), ProdEnv)
	}
}
