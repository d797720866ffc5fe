package contract

import (
	"slices"

	"gopkg.in/yaml.v3"
)

// priority reads a QoS class's priority: critical, high, normal or low.
func (p *parser) priority(n *yaml.Node, what string, q *QoSClass) {
	v, ok := p.scalar(n, what+" priority")
	if !ok {
		return
	}
	if !slices.Contains(Priorities, Priority(v)) {
		p.errorf(n, "write critical (never held back), high (batches shrink), normal (slowed) or low (paused)", "%s priority %q is not a priority", what, v)
		return
	}
	q.Priority = Priority(v)
}

// ConsumerGroups are the groups the contract's services consume a domain
// with, sorted: the groups whose lag the domain's producers watch.
func (c *Contract) ConsumerGroups(d *Domain) []string {
	var out []string
	for _, s := range c.Services {
		for _, cons := range s.Consumes {
			if cons.Domain == d && !slices.Contains(out, cons.Group) {
				out = append(out, cons.Group)
			}
		}
	}
	slices.Sort(out)
	return out
}
