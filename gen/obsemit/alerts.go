package obsemit

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ampyfin/ampy-bus/gen/contract"
)

// Alert names, the same in every domain's group; labels tell domains apart.
const (
	AlertLatency    = "AmpyBusDeliveryLatencyP99High"
	AlertLag        = "AmpyBusConsumerLagGrowing"
	AlertDLQ        = "AmpyBusDeadLetterSpike"
	AlertRetries    = "AmpyBusRetriesHigh"
	AlertDecodeFail = "AmpyBusDecodeFailures"
)

// Thresholds the alerts share. The latency target is each domain's QoS
// class's latency_p99; these are the rest.
const (
	lagFloor       = 1000 // messages behind before growth alerts
	dlqSpike       = 10   // dead letters in 5m for non-critical domains
	retriesPerSec  = 1
	latencyWindow  = "5m"
	latencyFor     = "5m"
	lagWindow      = "10m"
	lagFor         = "10m"
	retriesFor     = "10m"
	countingWindow = "5m"
)

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// alert is one rule of a domain, with the labels its expression keeps,
// which a rule test must expect.
type alert struct {
	rule
	// byLabels are the series labels the expression's result carries.
	byLabels []string
	// series feeds the rule test: metric{labels} → promtool values.
	series []testSeries
}

type testSeries struct {
	metric string
	labels map[string]string
	values string
}

func domainAlerts(c *contract.Contract, d *contract.Domain) []alert {
	re := promString(topicRegexp(c, d, ""))
	name := d.Name + " " + d.Version
	target, qos := time.Duration(0), "none"
	if d.QoS != nil {
		target, qos = d.QoS.LatencyP99, d.QoS.Name
	}
	severity := "ticket"
	dlqOver := dlqSpike
	if critical(d) {
		severity, dlqOver = "page", 0
	}
	labels := func() map[string]string {
		return map[string]string{"severity": severity, "domain": d.Name, "version": d.Version, "qos": qos}
	}
	topic := exampleTopic(c, d, "prod")
	var out []alert
	if target > 0 {
		out = append(out, alert{
			rule: rule{
				Alert: AlertLatency,
				Expr: fmt.Sprintf("histogram_quantile(0.99, sum by (le, topic) (rate(bus_delivery_latency_ms_bucket{topic=~%s}[%s]))) > %s",
					re, latencyWindow, ms(target)),
				For: latencyFor, Labels: labels(),
				Annotations: map[string]string{
					"summary":     fmt.Sprintf("%s: p99 delivery latency over the %s target of %s", name, qos, target),
					"description": fmt.Sprintf("p99 from produced_at to delivery on {{ $labels.topic }} has been over %s ms for %s.", ms(target), latencyFor),
				},
			},
			byLabels: []string{"topic"},
			series: []testSeries{
				// Every observation lands past the largest finite bucket, whose
				// bound (ten times the target) the quantile then reports.
				{"bus_delivery_latency_ms_bucket", map[string]string{"topic": topic, "le": ms(10 * target)}, "0+0x30"},
				{"bus_delivery_latency_ms_bucket", map[string]string{"topic": topic, "le": "+Inf"}, "0+60x30"},
			},
		})
	}
	out = append(out,
		alert{
			rule: rule{
				Alert: AlertLag,
				Expr: fmt.Sprintf("deriv(bus_consumer_lag{topic=~%s}[%s]) > 0 and bus_consumer_lag{topic=~%s} > %d",
					re, lagWindow, re, lagFloor),
				For: lagFor, Labels: labels(),
				Annotations: map[string]string{
					"summary":     fmt.Sprintf("%s: a consumer group is falling behind", name),
					"description": fmt.Sprintf("{{ $labels.consumer }} on {{ $labels.topic }} is over %d messages behind and the backlog has grown for %s.", lagFloor, lagFor),
				},
			},
			byLabels: []string{"topic", "consumer"},
			series:   []testSeries{{"bus_consumer_lag", map[string]string{"topic": topic, "consumer": "rule-test"}, "0+200x30"}},
		},
		alert{
			rule: rule{
				Alert:  AlertDLQ,
				Expr:   fmt.Sprintf("sum by (topic, reason) (increase(bus_dlq_total{topic=~%s}[%s])) > %d", re, countingWindow, dlqOver),
				Labels: labels(),
				Annotations: map[string]string{
					"summary":     fmt.Sprintf("%s: messages are being dead-lettered", name),
					"description": fmt.Sprintf("{{ $labels.topic }} dead-lettered over %d messages in %s for {{ $labels.reason }}: ampybusctl dlq-inspect --subject %s.{env}.dlq.v1.%s", dlqOver, countingWindow, c.Namespace, d.Name),
				},
			},
			byLabels: []string{"topic", "reason"},
			series:   []testSeries{{"bus_dlq_total", map[string]string{"topic": topic, "reason": "handler"}, "0+20x30"}},
		},
		alert{
			rule: rule{
				Alert: AlertRetries,
				Expr:  fmt.Sprintf("sum by (topic, reason) (rate(bus_retry_total{topic=~%s}[%s])) > %d", re, countingWindow, retriesPerSec),
				For:   retriesFor, Labels: labels(),
				Annotations: map[string]string{
					"summary":     fmt.Sprintf("%s: handlers keep failing and retrying", name),
					"description": fmt.Sprintf("{{ $labels.topic }} has retried over %d message(s) a second for %s ({{ $labels.reason }}).", retriesPerSec, retriesFor),
				},
			},
			byLabels: []string{"topic", "reason"},
			series:   []testSeries{{"bus_retry_total", map[string]string{"topic": topic, "reason": "handler"}, "0+120x30"}},
		},
		alert{
			rule: rule{
				Alert:  AlertDecodeFail,
				Expr:   fmt.Sprintf("sum by (topic, reason) (increase(bus_decode_fail_total{topic=~%s}[%s])) > 0", re, countingWindow),
				Labels: labels(),
				Annotations: map[string]string{
					"summary":     fmt.Sprintf("%s: a producer is breaking the contract", name),
					"description": "Consumers of {{ $labels.topic }} refused messages that failed their checks ({{ $labels.reason }}); they are in the dead-letter queue.",
				},
			},
			byLabels: []string{"topic", "reason"},
			series:   []testSeries{{"bus_decode_fail_total", map[string]string{"topic": topic, "reason": "decode_error"}, "0+1x30"}},
		},
	)
	return out
}

func alertRules(c *contract.Contract, doms []*contract.Domain, source string) ([]byte, error) {
	var f ruleFile
	for _, d := range doms {
		g := ruleGroup{Name: c.Namespace + "-bus." + d.Name + "." + d.Version}
		for _, a := range domainAlerts(c, d) {
			g.Rules = append(g.Rules, a.rule)
		}
		f.Groups = append(f.Groups, g)
	}
	return marshalYAML(header(source), f)
}

type testFile struct {
	RuleFiles          []string    `yaml:"rule_files"`
	EvaluationInterval string      `yaml:"evaluation_interval"`
	Tests              []testGroup `yaml:"tests"`
}

type testGroup struct {
	Interval    string      `yaml:"interval"`
	InputSeries []inputLine `yaml:"input_series"`
	AlertTests  []alertTest `yaml:"alert_rule_test"`
}

type inputLine struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTest struct {
	EvalTime  string     `yaml:"eval_time"`
	Alertname string     `yaml:"alertname"`
	ExpAlerts []expAlert `yaml:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

// alertTests feeds every domain's alerts series that must fire them by
// minute 25, and none by minute 0.
func alertTests(c *contract.Contract, doms []*contract.Domain, source string) ([]byte, error) {
	g := testGroup{Interval: "1m"}
	firing := map[string][]expAlert{}
	var names []string
	for _, d := range doms {
		for _, a := range domainAlerts(c, d) {
			if _, seen := firing[a.Alert]; !seen {
				names = append(names, a.Alert)
				firing[a.Alert] = []expAlert{}
			}
			for _, s := range a.series {
				g.InputSeries = append(g.InputSeries, inputLine{Series: seriesText(s), Values: s.values})
			}
			labels := map[string]string{}
			for k, v := range a.Labels {
				labels[k] = v
			}
			for _, k := range a.byLabels {
				labels[k] = a.series[len(a.series)-1].labels[k]
			}
			firing[a.Alert] = append(firing[a.Alert], expAlert{ExpLabels: labels, ExpAnnotations: expand(a.Annotations, labels)})
		}
	}
	for _, n := range names {
		g.AlertTests = append(g.AlertTests, alertTest{EvalTime: "0m", Alertname: n, ExpAlerts: []expAlert{}})
	}
	for _, n := range names {
		g.AlertTests = append(g.AlertTests, alertTest{EvalTime: "25m", Alertname: n, ExpAlerts: firing[n]})
	}
	return marshalYAML(header(source), testFile{RuleFiles: []string{"alerts.yml"}, EvaluationInterval: "1m", Tests: []testGroup{g}})
}

// seriesText is a series in promtool's notation: name{a="x",b="y"}.
func seriesText(s testSeries) string {
	var b bytes.Buffer
	b.WriteString(s.metric + "{")
	for i, k := range slices.Sorted(maps.Keys(s.labels)) {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(k + "=" + strconv.Quote(s.labels[k]))
	}
	b.WriteString("}")
	return b.String()
}

// expand fills the {{ $labels.x }} references the annotations use.
func expand(annotations, labels map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range annotations {
		for lk, lv := range labels {
			v = strings.ReplaceAll(v, "{{ $labels."+lk+" }}", lv)
		}
		out[k] = v
	}
	return out
}

func marshalYAML(head string, v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(head)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
