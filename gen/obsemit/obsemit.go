// Package obsemit renders what an operator deploys to watch a bus, from its
// contract: Prometheus alert rules per domain (p99 delivery latency against
// the domain's QoS target, consumer lag growth, dead-letter spikes, retries,
// decode failures), a promtool rule test that fires every alert, and a
// Grafana dashboard with a row per domain. They read the bus_* metrics the
// ampyotel hook records.
package obsemit

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
)

// Paths of the files Emit writes, below its output directory.
const (
	AlertsFile     = "prometheus/alerts.yml"
	AlertTestsFile = "prometheus/alerts_test.yml"
	DashboardFile  = "grafana/ampy-bus.json"
)

// Emitter is the observability output.
type Emitter struct {
	// Source names the contract in the generated files' headers.
	Source string
}

// Name implements output.Emitter.
func (Emitter) Name() string { return "observability" }

// Emit implements output.Emitter.
func (e Emitter) Emit(c *contract.Contract) (map[string][]byte, error) {
	doms := watched(c)
	if len(doms) == 0 {
		return nil, fmt.Errorf("%s: no domain carries typed payloads, so there is nothing to watch", c.File)
	}
	rules, err := alertRules(c, doms, e.Source)
	if err != nil {
		return nil, err
	}
	tests, err := alertTests(c, doms, e.Source)
	if err != nil {
		return nil, err
	}
	dash, err := dashboard(c, doms, e.Source)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{AlertsFile: rules, AlertTestsFile: tests, DashboardFile: dash}, nil
}

// watched are the domains with typed subtopics: a raw domain (the
// dead-letter queue) has no consumers to be late or lag.
func watched(c *contract.Contract) []*contract.Domain {
	var out []*contract.Domain
	for _, d := range c.Domains {
		for _, s := range d.Subtopics {
			if !s.Raw() {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// topicRegexp matches the topic label of every subtopic of d in any env:
// the label is the subtopic's pattern, ampy.prod.bars.v1.{mic}.{symbol}.
func topicRegexp(c *contract.Contract, d *contract.Domain, env string) string {
	if env == "" {
		env = "[^.]+"
	}
	return regexp.QuoteMeta(c.Namespace) + `\.` + env + `\.` + regexp.QuoteMeta(d.Name) + `\.` + regexp.QuoteMeta(d.Version) + `\..+`
}

// promString quotes s as a PromQL string literal.
func promString(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

// exampleTopic is one topic label of d in env, for rule tests.
func exampleTopic(c *contract.Contract, d *contract.Domain, env string) string {
	for _, s := range d.Subtopics {
		if !s.Raw() {
			return c.Namespace + "." + env + "." + d.Name + "." + d.Version + "." + s.Pattern.Text
		}
	}
	return ""
}

// ms renders a duration in milliseconds for PromQL.
func ms(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", float64(d.Microseconds())/1000), "0"), ".")
}

// header is the first line of a YAML file.
func header(source string) string {
	return "# " + output.Marker + " Source: " + source + "\n"
}

// critical reports whether a domain's QoS class is the one where every
// message counts: its alerts page, and one dead letter is a spike.
func critical(d *contract.Domain) bool { return d.QoS != nil && d.QoS.Name == "critical" }
