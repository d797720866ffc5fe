// Package docemit writes the contract as a Markdown catalog a reviewer
// reads in a pull request: an index with a mermaid diagram of which
// service publishes to which domain and who consumes it, each service's
// integration note (the topics it needs and the headers it sets), and a
// page per domain version (topics, payload fields, keys, ordering, QoS and
// SLO, retention, replicas, publishers and consumers).
package docemit

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
)

// Emitter writes README.md and one page per domain version.
type Emitter struct {
	// Source names the contract in the pages' headers.
	Source string
}

// Name implements output.Emitter.
func (Emitter) Name() string { return "docs" }

func page(d *contract.Domain) string { return d.Name + "." + d.Version + ".md" }

// Emit implements output.Emitter.
func (e Emitter) Emit(c *contract.Contract) (map[string][]byte, error) {
	files := map[string][]byte{"README.md": []byte(index(c, e.Source))}
	for _, d := range c.Domains {
		files[page(d)] = []byte(domainPage(c, d, e.Source))
	}
	return files, nil
}

func header(source string) string {
	return "<!-- " + output.Marker + " Source: " + source + " -->\n"
}

func topic(c *contract.Contract, d *contract.Domain, s *contract.Subtopic) string {
	return c.Namespace + ".{env}." + d.Name + "." + d.Version + "." + s.Pattern.Text
}

func index(c *contract.Contract, source string) string {
	var b strings.Builder
	b.WriteString(header(source))
	fmt.Fprintf(&b, "# The %s bus contract\n\nEnvs: %s. Topics are `%s.{env}.{domain}.{version}.{subtopic}`.\n\n", c.Namespace, strings.Join(c.Envs, ", "), c.Namespace)
	b.WriteString("## Domains\n\n| domain | QoS (p99) | ordering | retention | replicas | subtopics |\n|---|---|---|---|---|---|\n")
	for _, d := range c.Domains {
		qos := "-"
		if d.QoS != nil {
			qos = fmt.Sprintf("%s (%s)", d.QoS.Name, d.QoS.LatencyP99)
		}
		var subs []string
		for _, s := range d.Subtopics {
			subs = append(subs, "`"+s.Pattern.Text+"`")
		}
		fmt.Fprintf(&b, "| [%s %s](%s) | %s | %s | %s | %d | %s |\n", d.Name, d.Version, page(d), qos, ordering(d.Ordering), retention(c, d), d.Replicas, strings.Join(subs, ", "))
	}
	if len(c.Services) > 0 {
		b.WriteString("\n## Who talks to whom\n\n```mermaid\nflowchart LR\n")
		for _, d := range c.Domains {
			fmt.Fprintf(&b, "  %s[(%s %s)]\n", nodeID("d", d.Name+"_"+d.Version), d.Name, d.Version)
		}
		for _, s := range c.Services {
			fmt.Fprintf(&b, "  %s([%s])\n", nodeID("s", s.Name), s.Name)
		}
		var edges []string
		for _, s := range c.Services {
			for _, r := range s.Publishes {
				edges = append(edges, fmt.Sprintf("  %s --> %s", nodeID("s", s.Name), nodeID("d", r.Domain.Name+"_"+r.Domain.Version)))
			}
			for _, r := range s.Consumes {
				edges = append(edges, fmt.Sprintf("  %s --> %s", nodeID("d", r.Domain.Name+"_"+r.Domain.Version), nodeID("s", s.Name)))
			}
		}
		b.WriteString(strings.Join(compact(edges), "\n") + "\n```\n\n## Services\n")
		for _, s := range c.Services {
			integration(&b, c, s)
		}
	}
	return b.String()
}

func nodeID(prefix, name string) string {
	return prefix + "_" + strings.NewReplacer("-", "_", ".", "_").Replace(name)
}

func compact(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// integration is the seed's integration note for one service: the topics
// it needs and the headers it sets.
func integration(b *strings.Builder, c *contract.Contract, s *contract.Service) {
	fmt.Fprintf(b, "\n### %s\n\n", s.Name)
	if s.Description != "" {
		b.WriteString(s.Description + "\n\n")
	}
	if len(s.Publishes) > 0 {
		b.WriteString("Publishes (it sets `message_id`, `schema_fqdn`, `schema_version`, `schema_hash`, `content_type`, `produced_at`, `producer` = `" + s.Name + "@<instance>`, `source` = `" + s.Name + "`, `run_id`, `traceparent`, and the keys below; the generated publisher does it):\n\n")
		for _, r := range s.Publishes {
			keys := "partition_key `" + tmpl(r.Subtopic.PartitionKey) + "`"
			if r.Subtopic.DedupeKey != nil {
				keys += ", dedupe_key `" + tmpl(r.Subtopic.DedupeKey) + "`"
			}
			fmt.Fprintf(b, "- `%s` carrying `%s`: %s\n", topic(c, r.Domain, r.Subtopic), r.Subtopic.PayloadName, keys)
		}
		b.WriteString("\n")
	}
	if len(s.Consumes) > 0 {
		b.WriteString("Consumes:\n\n")
		for _, r := range s.Consumes {
			fmt.Fprintf(b, "- `%s` as group `%s`\n", topic(c, r.Domain, r.Subtopic), r.Group)
		}
		b.WriteString("\n")
	}
	var rights []string
	for right, has := range map[string]bool{"admin": s.Admin, "redrive": s.Redrive, "replay": s.Replay} {
		if has {
			rights = append(rights, right)
		}
	}
	slices.Sort(rights)
	if len(rights) > 0 {
		fmt.Fprintf(b, "May also: %s.\n", strings.Join(rights, ", "))
	}
}

func tmpl(t *contract.Template) string {
	if t == nil {
		return ""
	}
	return t.Text
}

func ordering(o contract.Ordering) string {
	s := string(o.Rule)
	if o.By != "" {
		s += " by `" + o.By + "`"
	}
	switch o.Expired {
	case contract.ExpiredSkip:
		s += ", skipped after `" + o.Expires + "`"
	case contract.ExpiredFlag:
		s += ", flagged after `" + o.Expires + "`"
	}
	if o.Restatements {
		s += ", newer snapshots restate"
	}
	return s
}

func domainPage(c *contract.Contract, d *contract.Domain, source string) string {
	var b strings.Builder
	b.WriteString(header(source))
	fmt.Fprintf(&b, "# %s %s\n\n", d.Name, d.Version)
	if d.Description != "" {
		b.WriteString(d.Description + "\n\n")
	}
	qos, slo := "-", "-"
	if d.QoS != nil {
		qos, slo = d.QoS.Name, "p99 publish to first delivery ≤ "+d.QoS.LatencyP99.String()
	}
	fmt.Fprintf(&b, "| | |\n|---|---|\n| QoS | %s (%s) |\n| ordering | %s |\n| retention | %s |\n| replicas | %d |\n| partitions | %d |\n| max payload | %d bytes (gzip above %d) |\n| retry | %d attempts, backoff %s to %s |\n\n",
		qos, slo, ordering(d.Ordering), retention(c, d), d.Replicas, d.Partitions, d.MaxPayload, d.CompressAbove, d.Retry.MaxAttempts, d.Retry.Backoff, d.Retry.MaxBackoff)
	for _, s := range d.Subtopics {
		fmt.Fprintf(&b, "## `%s`\n\n", topic(c, d, s))
		if s.Description != "" {
			b.WriteString(s.Description + "\n\n")
		}
		fmt.Fprintf(&b, "Payload `%s`, schema %s. Partition key `%s`", s.PayloadName, s.SchemaVersion, tmpl(s.PartitionKey))
		if s.DedupeKey != nil {
			fmt.Fprintf(&b, ", dedupe key `%s`", tmpl(s.DedupeKey))
		}
		b.WriteString(".\n\n")
		var pubs, subs []string
		for _, svc := range c.Services {
			for _, r := range svc.Publishes {
				if r.Subtopic == s {
					pubs = append(pubs, svc.Name)
				}
			}
			for _, r := range svc.Consumes {
				if r.Subtopic == s {
					subs = append(subs, svc.Name+" (group "+r.Group+")")
				}
			}
		}
		if len(pubs)+len(subs) > 0 {
			fmt.Fprintf(&b, "Published by: %s. Consumed by: %s.\n\n", orNone(compact(pubs)), orNone(subs))
		}
		if s.Payload != nil {
			b.WriteString("| field | type | number |\n|---|---|---|\n")
			fields(&b, s.Payload, "", map[protoreflect.FullName]bool{})
			b.WriteString("\n")
		}
	}
	return b.String()
}

// retention is a domain's retention, with the envs that differ:
// 3d (prod 7d).
func retention(c *contract.Contract, d *contract.Domain) string {
	var other []string
	for _, env := range c.Envs {
		if r, ok := d.RetentionByEnv[env]; ok && r != d.Retention {
			other = append(other, env+" "+days(r))
		}
	}
	if len(other) == 0 {
		return days(d.Retention)
	}
	return days(d.Retention) + " (" + strings.Join(other, ", ") + ")"
}

// days writes a whole number of days as such (7d), anything else as Go does.
func days(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// fields lists a message's fields, nested messages indented by path.
func fields(b *strings.Builder, m protoreflect.MessageDescriptor, prefix string, seen map[protoreflect.FullName]bool) {
	if seen[m.FullName()] {
		return
	}
	seen[m.FullName()] = true
	defer delete(seen, m.FullName())
	fs := m.Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		typ := f.Kind().String()
		switch {
		case f.IsMap():
			typ = "map"
		case f.Message() != nil:
			typ = string(f.Message().FullName())
		case f.Enum() != nil:
			typ = string(f.Enum().FullName())
		}
		if f.IsList() {
			typ = "repeated " + typ
		}
		fmt.Fprintf(b, "| `%s%s` | %s | %d |\n", prefix, f.Name(), typ, f.Number())
		if f.Message() != nil && !f.IsMap() && !strings.HasPrefix(string(f.Message().FullName()), "google.protobuf.") {
			fields(b, f.Message(), prefix+string(f.Name())+".", seen)
		}
	}
}
