package obsemit

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
)

// The dashboard's JSON model, the subset of Grafana's this file uses.
type grafanaDashboard struct {
	// Description comes first so the file's first line carries the marker.
	Description   string         `json:"description"`
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	Tags          []string       `json:"tags"`
	Timezone      string         `json:"timezone"`
	SchemaVersion int            `json:"schemaVersion"`
	Refresh       string         `json:"refresh"`
	Time          timeRange      `json:"time"`
	Templating    templating     `json:"templating"`
	Panels        []grafanaPanel `json:"panels"`
}

type timeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type templating struct {
	List []templateVar `json:"list"`
}

type templateVar struct {
	Name    string      `json:"name"`
	Label   string      `json:"label"`
	Type    string      `json:"type"`
	Query   string      `json:"query"`
	Current *varCurrent `json:"current,omitempty"`
}

type varCurrent struct {
	Text  string `json:"text"`
	Value string `json:"value"`
}

type grafanaPanel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description,omitempty"`
	GridPos     gridPos        `json:"gridPos"`
	Collapsed   *bool          `json:"collapsed,omitempty"`
	Datasource  *datasource    `json:"datasource,omitempty"`
	Targets     []target       `json:"targets,omitempty"`
	FieldConfig *fieldConfig   `json:"fieldConfig,omitempty"`
	Panels      []grafanaPanel `json:"panels"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
}

type fieldConfig struct {
	Defaults fieldDefaults `json:"defaults"`
}

type fieldDefaults struct {
	Unit       string      `json:"unit"`
	Thresholds *thresholds `json:"thresholds,omitempty"`
	Custom     *custom     `json:"custom,omitempty"`
}

type thresholds struct {
	Mode  string `json:"mode"`
	Steps []step `json:"steps"`
}

type step struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

type custom struct {
	ThresholdsStyle struct {
		Mode string `json:"mode"`
	} `json:"thresholdsStyle"`
}

// Panel queries, for one domain's topic regexp (with $env in it).
func domainPanels(c *contract.Contract, d *contract.Domain, y int, next func() int) []grafanaPanel {
	re := promString(topicRegexp(c, d, "$env"))
	ds := &datasource{Type: "prometheus", UID: "${datasource}"}
	panel := func(title, desc, unit string, x, w int, targets ...target) grafanaPanel {
		for i := range targets {
			targets[i].RefID = string(rune('A' + i))
		}
		return grafanaPanel{ID: next(), Type: "timeseries", Title: title, Description: desc, Datasource: ds,
			GridPos: gridPos{H: 8, W: w, X: x, Y: y}, Targets: targets, FieldConfig: &fieldConfig{Defaults: fieldDefaults{Unit: unit}}, Panels: nil}
	}
	latency := panel("delivery latency", "produced_at to delivery, from bus_delivery_latency_ms; the red line is the QoS class's latency_p99", "ms", 0, 8,
		target{Expr: fmt.Sprintf("histogram_quantile(0.99, sum by (le, topic) (rate(bus_delivery_latency_ms_bucket{topic=~%s}[5m])))", re), LegendFormat: "p99 {{topic}}"},
		target{Expr: fmt.Sprintf("histogram_quantile(0.5, sum by (le, topic) (rate(bus_delivery_latency_ms_bucket{topic=~%s}[5m])))", re), LegendFormat: "p50 {{topic}}"},
	)
	if d.QoS != nil && d.QoS.LatencyP99 > 0 {
		limit := float64(d.QoS.LatencyP99.Microseconds()) / 1000
		cu := &custom{}
		cu.ThresholdsStyle.Mode = "line"
		latency.FieldConfig.Defaults.Thresholds = &thresholds{Mode: "absolute", Steps: []step{{Color: "green", Value: nil}, {Color: "red", Value: &limit}}}
		latency.FieldConfig.Defaults.Custom = cu
	}
	return []grafanaPanel{
		latency,
		panel("throughput", "messages per second acknowledged by the broker (produced) and settled by consumers (consumed)", "ops", 8, 8,
			target{Expr: fmt.Sprintf("sum by (topic) (rate(bus_produced_total{topic=~%s}[5m]))", re), LegendFormat: "produced {{topic}}"},
			target{Expr: fmt.Sprintf("sum by (topic, consumer) (rate(bus_consumed_total{topic=~%s}[5m]))", re), LegendFormat: "consumed {{consumer}}"},
		),
		panel("consumer lag", "messages not yet acknowledged, per consumer group", "short", 16, 8,
			target{Expr: fmt.Sprintf("max by (topic, consumer) (bus_consumer_lag{topic=~%s})", re), LegendFormat: "{{consumer}}"},
		),
		panel("dead letters, retries, decode failures", "per second, by reason", "ops", 0, 12,
			target{Expr: fmt.Sprintf("sum by (reason) (rate(bus_dlq_total{topic=~%s}[5m]))", re), LegendFormat: "dlq {{reason}}"},
			target{Expr: fmt.Sprintf("sum by (reason) (rate(bus_retry_total{topic=~%s}[5m]))", re), LegendFormat: "retry {{reason}}"},
			target{Expr: fmt.Sprintf("sum by (reason) (rate(bus_decode_fail_total{topic=~%s}[5m]))", re), LegendFormat: "decode {{reason}}"},
		),
		panel("payload size", "bytes per message as sent (compressed when gzipped)", "bytes", 12, 12,
			target{Expr: fmt.Sprintf("histogram_quantile(0.99, sum by (le, topic) (rate(bus_batch_size_bytes_bucket{topic=~%s}[5m])))", re), LegendFormat: "p99 {{topic}}"},
		),
	}
}

func dashboard(c *contract.Contract, doms []*contract.Domain, source string) ([]byte, error) {
	id := 0
	next := func() int { id++; return id }
	envs := ""
	for i, e := range c.Envs {
		if i > 0 {
			envs += ","
		}
		envs += e
	}
	def := c.Envs[len(c.Envs)-1]
	dash := grafanaDashboard{
		Description: output.Marker + " Source: " + source + ". One row per domain: delivery latency against its QoS target, throughput, consumer lag, dead letters, retries and decode failures.",
		UID:         c.Namespace + "-bus", Title: c.Namespace + "-bus", Tags: []string{"ampy-bus", c.Namespace},
		Timezone: "utc", SchemaVersion: 39, Refresh: "30s", Time: timeRange{From: "now-1h", To: "now"},
		Templating: templating{List: []templateVar{
			{Name: "datasource", Label: "Prometheus", Type: "datasource", Query: "prometheus"},
			{Name: "env", Label: "env", Type: "custom", Query: envs, Current: &varCurrent{Text: def, Value: def}},
		}},
	}
	y := 0
	for _, d := range doms {
		collapsed := false
		title := d.Name + " " + d.Version
		if d.QoS != nil {
			title += fmt.Sprintf(" (QoS %s, p99 target %s)", d.QoS.Name, d.QoS.LatencyP99)
		}
		dash.Panels = append(dash.Panels, grafanaPanel{ID: next(), Type: "row", Title: title, Collapsed: &collapsed, GridPos: gridPos{H: 1, W: 24, X: 0, Y: y}, Panels: []grafanaPanel{}})
		y++
		for _, p := range domainPanels(c, d, y, next) {
			if p.GridPos.W == 12 { // the second line of the row
				p.GridPos.Y = y + 8
			}
			dash.Panels = append(dash.Panels, p)
		}
		y += 16
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(dash); err != nil {
		return nil, err
	}
	// The marker must be on the first line: put the description there.
	out := bytes.Replace(b.Bytes(), []byte("{\n  \"description\""), []byte("{\"description\""), 1)
	return out, nil
}
