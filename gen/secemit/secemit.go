// Package secemit turns the contract's services: section into the broker
// permissions that give each service exactly what it may do: nats-server
// authorization users and Kafka ACLs, per env. The bindings say which
// subjects and ACLs each operation needs (natsbinding.Rights,
// kafkabinding.ACL); this package composes them per service.
//
// NATS permissions are server authorization users rather than accounts and
// JWTs: every service shares the same JetStream streams, which within one
// account need no exports and imports (each of which would repeat these
// subject lists), and a config file is reviewed in a pull request like the
// contract it comes from. The subject lists carry over unchanged to nsc user
// permissions for an operator running in JWT mode.
//
// NATS permissions reach a subtopic's shape; a Kafka topic holds all the
// subtopics of a domain version and an ACL names a topic, so on Kafka a
// service granted one subtopic may write the domain's others.
package secemit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

// Grant is what one service may do in one env, on each broker.
type Grant struct {
	Service string
	NATS    natsbinding.Rights
	Kafka   []kafkabinding.ACL
}

// Grants computes every service's rights in env, in the contract's order.
func Grants(c *contract.Contract, env string) []Grant {
	var out []Grant
	for _, s := range c.Services {
		out = append(out, grant(c, s, env))
	}
	return out
}

func prefix(c *contract.Contract, d *contract.Domain, env string) string {
	return c.Namespace + "." + env + "." + d.Name + "." + d.Version
}

// shape is a subtopic's pattern with each parameter a *.
func shape(st *contract.Subtopic) string {
	toks := make([]string, len(st.Pattern.Tokens))
	for i, t := range st.Pattern.Tokens {
		toks[i] = t.Literal
		if t.Param != "" {
			toks[i] = "*"
		}
	}
	return strings.Join(toks, ".")
}

// deadLetters is the dlq domain of the contract, if any.
func deadLetters(c *contract.Contract) *contract.Domain {
	for _, d := range c.Domains {
		if d.Name == "dlq" {
			return d
		}
	}
	return nil
}

func grant(c *contract.Contract, s *contract.Service, env string) Grant {
	g := Grant{Service: s.Name}
	principal := kafkabinding.Principal(s.Name)
	var kafka []kafkabinding.ACL
	g.NATS.Add(natsbinding.ClientRights(s.Name))
	publish := func(d *contract.Domain, shapes []string) {
		p := prefix(c, d, env)
		g.NATS.Add(natsbinding.PublishRights(p, shapes))
		kafka = append(kafka, kafkabinding.ProduceACLs(principal, p)...)
	}
	for _, r := range s.Publishes {
		publish(r.Domain, []string{shape(r.Subtopic)})
		// Its producers watch the lag of the groups that consume the domain.
		if r.Domain.QoS != nil && r.Domain.QoS.MaxLag > 0 {
			p := prefix(c, r.Domain, env)
			for _, group := range c.ConsumerGroups(r.Domain) {
				g.NATS.Add(natsbinding.LagRights(p, r.Domain.Partitions, group))
				kafka = append(kafka, kafkabinding.LagACLs(principal, p, group)...)
			}
		}
	}
	dlq := deadLetters(c)
	for _, r := range s.Consumes {
		p := prefix(c, r.Domain, env)
		g.NATS.Add(natsbinding.GroupRights(p, r.Domain.Partitions, r.Group))
		kafka = append(kafka, kafkabinding.ConsumeACLs(principal, p, r.Group)...)
		if dlq != nil && r.Domain != dlq {
			// A consumer dead-letters what it cannot handle.
			publish(dlq, []string{r.Domain.Name})
		}
		if s.Replay {
			g.NATS.Add(natsbinding.ReadRights(p))
		}
	}
	if s.Redrive && dlq != nil {
		// Read the dead letters, and put them back on any typed topic.
		p := prefix(c, dlq, env)
		g.NATS.Add(natsbinding.ReadRights(p))
		g.NATS.Add(natsbinding.GroupRights(p, dlq.Partitions, "ampybusctl-redrive"))
		kafka = append(kafka, kafkabinding.ConsumeACLs(principal, p, "ampybusctl-redrive")...)
		for _, d := range c.Domains {
			if d == dlq {
				continue
			}
			var shapes []string
			for _, st := range d.Subtopics {
				shapes = append(shapes, shape(st))
			}
			publish(d, shapes)
		}
	}
	if s.Admin {
		g.NATS.Add(natsbinding.AdminRights())
		kafka = append(kafka, kafkabinding.AdminACLs(principal, c.Namespace+"."+env+".")...)
	}
	g.Kafka = uniqueACLs(kafka)
	return g
}

func uniqueACLs(in []kafkabinding.ACL) []kafkabinding.ACL {
	slices.SortFunc(in, func(a, b kafkabinding.ACL) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(in)
}

// PasswordVar is the environment variable a service's NATS password is read
// from: AMPY_PROD_OMS_PASSWORD for ampy-oms in prod... (namespace, env, service).
func PasswordVar(c *contract.Contract, env, service string) string {
	up := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(c.Namespace + "_" + env + "_" + service))
	return up + "_PASSWORD"
}

// NATSConf is the authorization block for env: one user per service, its
// password read from the environment.
func NATSConf(c *contract.Contract, env string) string {
	var users []natsbinding.User
	for _, g := range Grants(c, env) {
		users = append(users, natsbinding.User{Name: g.Service, Password: "$" + PasswordVar(c, env, g.Service), Rights: g.NATS})
	}
	return natsbinding.AuthorizationConf(users)
}

// KafkaACLs is env's ACLs, one per line.
func KafkaACLs(c *contract.Contract, env string) string {
	var b strings.Builder
	for _, g := range Grants(c, env) {
		fmt.Fprintf(&b, "# %s\n", g.Service)
		for _, a := range g.Kafka {
			b.WriteString(a.String() + "\n")
		}
	}
	return b.String()
}
