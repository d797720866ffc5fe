package main

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ampyfin/ampy-bus/internal/loadbench"
)

// Scenario is one comparison the README quotes.
type Scenario struct {
	Name, Title string
	Args        []string
	// Rows are the figures shown, by their names in the report.
	Rows []string
	// Rounds of typed and raw runs: five where a run's figure swings most
	// from one run to the next (unpaced publish, latency tails, the Kafka
	// consumer), so the median is not one run's luck; defaultRounds elsewhere.
	Rounds int
}

// defaultRounds is the fewest rounds a README figure is the median of, and
// the -count of the observability-overhead benchmarks.
const defaultRounds = 3

var (
	throughputRows = []string{"publish msgs/s", "consume msgs/s", "CPU µs/msg", "broker CPU µs/msg", "allocs/msg", "peak goroutines", "peak heap MiB", "heap after MiB"}
	codecRows      = []string{"publish msgs/s", "consume msgs/s", "CPU µs/msg", "broker CPU µs/msg", "allocs/msg"}
	latencyRows    = []string{"consume msgs/s", "latency p50 ms", "latency p90 ms", "latency p99 ms", "latency p99.9 ms", "latency max ms", "backlog at publish end", "CPU µs/msg", "broker CPU µs/msg", "allocs/msg", "peak goroutines", "peak heap MiB"}
)

// Scenarios are the comparisons the README quotes, in its order. Every
// setting a title names is passed explicitly, not left to a default.
var Scenarios = []Scenario{
	{"nats-publish", "NATS, async publish, 4 publishers", []string{"--mode", "publish", "--messages", "200000", "--publishers", "4"}, throughputRows, 5},
	{"nats-publish-same-codec", "NATS, async publish, 4 publishers, the raw client encoding with the same generated MarshalVT", []string{"--mode", "publish", "--messages", "200000", "--publishers", "4", "--raw-vtproto"}, codecRows, 5},
	{"nats-consume-1", "NATS, consume 100,000 preloaded messages, 1 key, Concurrency 1", []string{"--mode", "consume", "--keys", "1", "--messages", "100000", "--concurrency", "1"}, throughputRows, defaultRounds},
	{"nats-consume-100", "NATS, consume 100,000 preloaded messages, 100 keys, Concurrency 1", []string{"--mode", "consume", "--keys", "100", "--messages", "100000", "--concurrency", "1"}, throughputRows, defaultRounds},
	{"nats-consume-100-same-codec", "NATS, consume 100,000 preloaded messages, 100 keys, Concurrency 1, the raw client decoding with the same generated UnmarshalVT", []string{"--mode", "consume", "--keys", "100", "--messages", "100000", "--concurrency", "1", "--raw-vtproto"}, codecRows, defaultRounds},
	{"nats-consume-10000", "NATS, consume 100,000 preloaded messages, 10,000 keys, Concurrency 1", []string{"--mode", "consume", "--keys", "10000", "--messages", "100000", "--concurrency", "1"}, throughputRows, defaultRounds},
	{"nats-consume-100-nogroup", "NATS, consume 100,000 preloaded messages, 100 keys, Concurrency 1, outside any group", []string{"--mode", "consume", "--keys", "100", "--messages", "100000", "--concurrency", "1", "--no-group"}, throughputRows, defaultRounds},
	{"nats-fanout-8", "NATS, eight fan-out groups in one process each consume 50,000 preloaded messages, 100 keys", []string{"--mode", "consume", "--keys", "100", "--messages", "50000", "--concurrency", "1", "--fanout", "8"}, throughputRows, defaultRounds},
	{"nats-e2e", "NATS, publish→handler at 10,000 msg/s, 100 keys", []string{"--mode", "e2e", "--rate", "10000", "--messages", "200000", "--keys", "100"}, latencyRows, 5},
	{"kafka-publish", "Kafka (kfake), async publish, 4 publishers", []string{"--transport", "kafka", "--mode", "publish", "--messages", "200000", "--publishers", "4"}, throughputRows, 5},
	{"kafka-publish-same-codec", "Kafka (kfake), async publish, 4 publishers, the raw client encoding with the same generated MarshalVT", []string{"--transport", "kafka", "--mode", "publish", "--messages", "200000", "--publishers", "4", "--raw-vtproto"}, codecRows, 5},
	{"kafka-consume-100", "Kafka (kfake), consume 100,000 preloaded messages, 100 keys, Concurrency 1", []string{"--transport", "kafka", "--mode", "consume", "--keys", "100", "--messages", "100000", "--concurrency", "1"}, throughputRows, 5},
	{"kafka-consume-100-same-codec", "Kafka (kfake), consume 100,000 preloaded messages, 100 keys, Concurrency 1, the raw client decoding with the same generated UnmarshalVT", []string{"--transport", "kafka", "--mode", "consume", "--keys", "100", "--messages", "100000", "--concurrency", "1", "--raw-vtproto"}, codecRows, 5},
	{"kafka-e2e", "Kafka (kfake), publish→handler at 10,000 msg/s, 100 keys", []string{"--transport", "kafka", "--mode", "e2e", "--rate", "10000", "--messages", "200000", "--keys", "100"}, latencyRows, 5},
}

// Doc is what the Performance section shows.
type Doc struct {
	Machine, Date string
	Benches       []Bench
	Overhead      Overhead
	BinSize       string
}

// Bench is one scenario's report and the command that made it.
type Bench struct {
	Scenario
	Command string
	Report  loadbench.Report
}

// Overhead is the observability benchmarks' results.
type Overhead struct {
	Command string
	Results []GoBench
}

// GoBench is one Go benchmark's runs.
type GoBench struct {
	Name            string
	NsPerOp, Allocs []float64
}

// The section benchdoc owns in the README.
const (
	beginMarker = "<!-- benchdoc:begin (make bench rewrites this section) -->"
	endMarker   = "<!-- benchdoc:end -->"
)

// Replace rewrites the text between the markers with doc. A partial run
// (-only) replaces only the tables it ran, so the markers of each table are
// kept too.
func Replace(readme []byte, doc Doc) ([]byte, error) {
	i, j := bytes.Index(readme, []byte(beginMarker)), bytes.Index(readme, []byte(endMarker))
	if i < 0 || j < i {
		return nil, errors.New("the README has no benchdoc markers: put " + beginMarker + " and " + endMarker + " around the Performance figures")
	}
	old := string(readme[i+len(beginMarker) : j])
	var b strings.Builder
	b.WriteString(beginMarker + "\n")
	fmt.Fprintf(&b, "\nMeasured on %s, %s. Each figure is the median over the rounds, the range in brackets; typed/raw is the ratio of medians (for msgs/s higher is better, for the rest lower); per round is the ratio within each round, whose typed and raw runs ran back to back, as median [range], which a machine whose speed drifts over minutes moves less.\n", doc.Machine, doc.Date)
	for _, s := range Scenarios {
		if bn, ok := find(doc.Benches, s.Name); ok {
			b.WriteString(bn.Markdown())
		} else if prev, ok := section(old, s.Name); ok {
			b.WriteString(prev) // not run this time: kept as it was
		}
	}
	if len(doc.Overhead.Results) > 0 {
		b.WriteString(doc.Overhead.Markdown())
	} else if prev, ok := section(old, "overhead"); ok {
		b.WriteString(prev)
	}
	if doc.BinSize != "" {
		fmt.Fprintf(&b, "\n<!-- table:binsize -->\n**Binary size** of a publisher-only service through the generated API against the same program on nats.go directly: %s.\n<!-- /table -->\n", doc.BinSize)
	} else if prev, ok := section(old, "binsize"); ok {
		b.WriteString(prev)
	}
	b.WriteString("\n")
	out := append([]byte{}, readme[:i]...)
	out = append(out, b.String()...)
	return append(out, readme[j:]...), nil
}

func find(bs []Bench, name string) (Bench, bool) {
	k := slices.IndexFunc(bs, func(b Bench) bool { return b.Name == name })
	if k < 0 {
		return Bench{}, false
	}
	return bs[k], true
}

// section is the text of a table previously written under name.
func section(text, name string) (string, bool) {
	open := "<!-- table:" + name + " -->"
	i := strings.Index(text, open)
	if i < 0 {
		return "", false
	}
	j := strings.Index(text[i:], "<!-- /table -->")
	if j < 0 {
		return "", false
	}
	return "\n" + text[i:i+j+len("<!-- /table -->")] + "\n", true
}

// Markdown is the scenario's table with its command.
func (bn Bench) Markdown() string {
	var b strings.Builder
	s := bn.Report.Settings
	fmt.Fprintf(&b, "\n<!-- table:%s -->\n**%s** (%d-byte BarBatch, %d rounds; `%s`):\n\n", bn.Name, bn.Title, s.PayloadBytes, s.Rounds, bn.Command)
	b.WriteString("| figure | typed | raw | typed/raw | per round |\n|---|---|---|---|---|\n")
	for _, row := range bn.Rows {
		k := slices.IndexFunc(bn.Report.Summary, func(f loadbench.Figure) bool { return f.Name == row })
		if k < 0 {
			continue
		}
		f := bn.Report.Summary[k]
		ratio := "–"
		if f.Ratio != 0 {
			ratio = strconv.FormatFloat(f.Ratio, 'f', 2, 64) + "×"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.Name, f.Typed, f.Raw, ratio, loadbench.RatioText(f.PerRound))
	}
	b.WriteString("<!-- /table -->\n")
	return b.String()
}

// Markdown is the observability-overhead table.
func (o Overhead) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n<!-- table:overhead -->\n**Observability overhead**: the same bus bare, with `plugin/ampyprom` (metrics), and with `plugin/ampyotel` traces too (every span sampled), in process (`%s`):\n\n", o.Command)
	b.WriteString("| benchmark | µs/op | allocs/op |\n|---|---|---|\n")
	for _, r := range o.Results {
		allocs := "–"
		if len(r.Allocs) > 0 {
			allocs = loadbench.StatOf(r.Allocs).String()
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.Name, loadbench.StatOf(scaled(r.NsPerOp, 1e-3)), allocs)
	}
	b.WriteString("<!-- /table -->\n")
	return b.String()
}

// scaled is vals times scale, for a Stat in other units.
func scaled(vals []float64, scale float64) []float64 {
	out := make([]float64, len(vals))
	for i, v := range vals {
		out[i] = v * scale
	}
	return out
}

// ParseGoBench reads `go test -bench -benchmem` output, grouping -count runs.
func ParseGoBench(out []byte) []GoBench {
	var res []GoBench
	for line := range bytes.Lines(out) {
		fields := strings.Fields(string(line))
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(fields[0], "Benchmark")
		if k := strings.LastIndex(name, "-"); k > 0 {
			name = name[:k] // the GOMAXPROCS suffix
		}
		var ns, allocs float64
		var haveNs, haveAllocs bool
		for k := 1; k+1 < len(fields); k++ {
			v, err := strconv.ParseFloat(fields[k], 64)
			if err != nil {
				continue
			}
			switch fields[k+1] {
			case "ns/op":
				ns, haveNs = v, true
			case "allocs/op":
				allocs, haveAllocs = v, true
			}
		}
		if !haveNs {
			continue
		}
		k := slices.IndexFunc(res, func(g GoBench) bool { return g.Name == name })
		if k < 0 {
			res = append(res, GoBench{Name: name})
			k = len(res) - 1
		}
		res[k].NsPerOp = append(res[k].NsPerOp, ns)
		if haveAllocs {
			res[k].Allocs = append(res[k].Allocs, allocs)
		}
	}
	return res
}
