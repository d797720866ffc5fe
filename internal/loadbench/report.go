package loadbench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Report is everything one invocation measured; --json prints it whole.
type Report struct {
	Settings Settings   `json:"settings"`
	Broker   BrokerInfo `json:"broker"`
	Runs     []*Result  `json:"runs"`
	// Summary is each figure over the runs, per client, and typed÷raw.
	Summary []Figure `json:"summary"`
}

// Settings is the load every run of a report carried.
type Settings struct {
	Mode         Mode    `json:"mode"`
	Transport    string  `json:"transport"`
	Env          string  `json:"env"`
	Publishers   int     `json:"publishers"`
	Consumers    int     `json:"consumers"`
	Concurrency  int     `json:"concurrency"`
	Fanout       int     `json:"fanout"`
	NoGroup      bool    `json:"no_group,omitempty"`
	Messages     int     `json:"messages"`
	Keys         int     `json:"keys"`
	PayloadBytes int     `json:"payload_bytes"`
	Rate         float64 `json:"rate"`
	Sync         bool    `json:"sync"`
	RawVTProto   bool    `json:"raw_vtproto,omitempty"`
	Rounds       int     `json:"rounds"`
}

// BrokerInfo says which broker the runs used and where it ran, since an
// in-process broker's work counts as the client's.
type BrokerInfo struct {
	URL   string `json:"url"`
	Where string `json:"where"`
	PID   int    `json:"pid,omitempty"`
}

// Figure is one measure over a report's runs. Ratio is the typed client's
// median over the raw one's; Better says which direction of it is better.
// PerRound is the typed÷raw ratio within each round, whose two runs ran
// back to back: on a machine whose speed drifts over minutes (a shared VM)
// it moves less than the medians do.
type Figure struct {
	Name     string  `json:"name"`
	Better   string  `json:"better"`
	Typed    *Stat   `json:"typed,omitempty"`
	Raw      *Stat   `json:"raw,omitempty"`
	Ratio    float64 `json:"ratio_typed_over_raw,omitempty"`
	PerRound *Stat   `json:"ratio_per_round,omitempty"`
}

// Stat is a figure's median and range over rounds.
type Stat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

// NewReport puts the runs of one invocation together with their summary.
func (b *Bench) NewReport(broker BrokerInfo, runs []*Result) *Report {
	cfg := b.cfg
	rounds := 0
	for _, r := range runs {
		rounds = max(rounds, r.Round)
	}
	return &Report{
		Settings: Settings{
			Mode: cfg.Mode, Transport: b.transport, Env: cfg.Env, Publishers: cfg.Publishers, Consumers: cfg.Consumers,
			Concurrency: cfg.Concurrency, Fanout: cfg.Fanout, NoGroup: cfg.NoGroup, Messages: cfg.Messages, Keys: cfg.Keys, PayloadBytes: b.PayloadBytes(),
			Rate: cfg.Rate, Sync: cfg.Sync, RawVTProto: cfg.RawVTProto, Rounds: max(rounds, 1),
		},
		Broker: broker, Runs: runs, Summary: summarize(cfg.Mode, runs),
	}
}

// measure is one row of the summary: its name, which way is better, the
// modes it applies to, and how to read it off a run.
type measure struct {
	name   string
	better string
	modes  string
	get    func(*Result) (float64, bool)
}

const higher, lower = "higher", "lower"

func lat(q func(*Latency) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Latency == nil {
			return 0, false
		}
		return q(r.Latency) / 1000, true
	}
}

func always(f func(*Result) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) { return f(r), true }
}

var measures = []measure{
	{"publish msgs/s", higher, "e2e publish", always(func(r *Result) float64 { return r.PublishRate })},
	{"consume msgs/s", higher, "e2e consume", always(func(r *Result) float64 { return r.ConsumeRate })},
	{"latency p50 ms", lower, "e2e", lat(func(l *Latency) float64 { return l.P50 })},
	{"latency p90 ms", lower, "e2e", lat(func(l *Latency) float64 { return l.P90 })},
	{"latency p99 ms", lower, "e2e", lat(func(l *Latency) float64 { return l.P99 })},
	{"latency p99.9 ms", lower, "e2e", lat(func(l *Latency) float64 { return l.P999 })},
	{"latency max ms", lower, "e2e", lat(func(l *Latency) float64 { return l.Max })},
	{"backlog at publish end", lower, "e2e", always(func(r *Result) float64 { return float64(r.BacklogAtPublishEnd) })},
	{"drain s", lower, "e2e", always(func(r *Result) float64 { return r.DrainSeconds })},
	{"consumer startup s", lower, "consume", always(func(r *Result) float64 { return r.StartupSeconds })},
	{"CPU µs/msg", lower, "e2e publish consume", always(func(r *Result) float64 { return r.CPUPerMsg })},
	{"broker CPU µs/msg", lower, "e2e publish consume", func(r *Result) (float64, bool) { return r.BrokerCPUPerMsg, r.BrokerCPUPerMsg > 0 }},
	{"allocs/msg", lower, "e2e publish consume", always(func(r *Result) float64 { return r.AllocsPerMsg })},
	{"peak goroutines", lower, "e2e publish consume", always(func(r *Result) float64 { return float64(r.PeakGoroutines) })},
	{"peak heap MiB", lower, "e2e publish consume", always(func(r *Result) float64 { return float64(r.PeakHeapBytes) / (1 << 20) })},
	{"heap after MiB", lower, "e2e publish consume", always(func(r *Result) float64 { return float64(r.HeapAfterBytes) / (1 << 20) })},
}

func summarize(mode Mode, runs []*Result) []Figure {
	var out []Figure
	for _, m := range measures {
		if !slices.Contains(strings.Fields(m.modes), string(mode)) {
			continue
		}
		f := Figure{Name: m.name, Better: m.better, PerRound: perRound(m, runs)}
		for _, c := range []Client{Typed, Raw} {
			var vals []float64
			for _, r := range runs {
				if v, ok := m.get(r); ok && r.Client == c {
					vals = append(vals, v)
				}
			}
			if len(vals) == 0 {
				continue
			}
			s := StatOf(vals)
			if c == Typed {
				f.Typed = s
			} else {
				f.Raw = s
			}
		}
		if f.Typed == nil && f.Raw == nil {
			continue
		}
		if f.Typed != nil && f.Raw != nil && f.Raw.Median != 0 {
			f.Ratio = f.Typed.Median / f.Raw.Median
		}
		out = append(out, f)
	}
	return out
}

// perRound is m's typed÷raw ratio in each round that has both runs, in
// round order; nil below two such rounds.
func perRound(m measure, runs []*Result) *Stat {
	type pair struct{ typed, raw float64 }
	byRound := map[int]*pair{}
	var order []int
	for _, r := range runs {
		v, ok := m.get(r)
		if !ok || r.Round == 0 {
			continue
		}
		p := byRound[r.Round]
		if p == nil {
			p = &pair{math.NaN(), math.NaN()}
			byRound[r.Round] = p
			order = append(order, r.Round)
		}
		if r.Client == Typed {
			p.typed = v
		} else {
			p.raw = v
		}
	}
	slices.Sort(order)
	var ratios []float64
	for _, n := range order {
		if p := byRound[n]; !math.IsNaN(p.typed) && !math.IsNaN(p.raw) && p.raw != 0 {
			ratios = append(ratios, p.typed/p.raw)
		}
	}
	if len(ratios) < 2 {
		return nil
	}
	return StatOf(ratios)
}

// StatOf is the median and range of vals (at least one).
func StatOf(vals []float64) *Stat {
	s := slices.Clone(vals)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Stat{Median: med, Min: s[0], Max: s[len(s)-1], Values: vals}
}

// Print writes the report for people: what ran where, then one row per
// figure with each client's median and range and the typed÷raw ratio.
func (rep *Report) Print(w io.Writer) {
	s := rep.Settings
	where := rep.Broker.Where
	if rep.Broker.PID != 0 {
		where = fmt.Sprintf("%s, pid %d", where, rep.Broker.PID)
	}
	fmt.Fprintf(w, "bench %s on %s at %s (broker %s", s.Mode, s.Transport, rep.Broker.URL, where)
	if rep.Broker.Where == "in process" {
		fmt.Fprint(w, ": its work counts in the CPU and allocation figures")
	}
	fmt.Fprintln(w, ")")
	pace := "unpaced"
	if s.Rate > 0 {
		pace = fmt.Sprintf("%g msg/s", s.Rate)
	}
	how := map[bool]string{false: "async", true: "sync"}[s.Sync]
	fmt.Fprintf(w, "%d messages of %d bytes over %d keys; %d publishers (%s, %s)", s.Messages, s.PayloadBytes, s.Keys, s.Publishers, how, pace)
	if s.RawVTProto {
		fmt.Fprint(w, "; raw encodes and decodes with MarshalVT/UnmarshalVT")
	}
	if s.Mode != Publish {
		if s.NoGroup {
			fmt.Fprintf(w, "; %d subscription(s) outside any group, concurrency %d", s.Fanout, s.Concurrency)
		} else if s.Fanout > 1 {
			fmt.Fprintf(w, "; %d fan-out groups (each sees every message) of %d consumer(s), concurrency %d", s.Fanout, s.Consumers, s.Concurrency)
		} else {
			fmt.Fprintf(w, "; one group of %d consumer(s), concurrency %d", s.Consumers, s.Concurrency)
		}
	}
	fmt.Fprintf(w, "; %d round(s)\n", s.Rounds)

	both := false
	rounds := false
	for _, f := range rep.Summary {
		both = both || (f.Typed != nil && f.Raw != nil)
		rounds = rounds || f.PerRound != nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch {
	case both && rounds:
		fmt.Fprintln(tw, "figure\ttyped median [range]\traw median [range]\ttyped/raw\tper round [range]")
	case both:
		fmt.Fprintln(tw, "figure\ttyped median [range]\traw median [range]\ttyped/raw")
	default:
		client := Typed
		if len(rep.Runs) > 0 {
			client = rep.Runs[0].Client
		}
		fmt.Fprintf(tw, "figure\t%s\n", client)
	}
	for _, f := range rep.Summary {
		switch {
		case both && rounds:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Name, f.Typed.String(), f.Raw.String(), ratio(f), RatioText(f.PerRound))
		case both:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, f.Typed.String(), f.Raw.String(), ratio(f))
		default:
			fmt.Fprintf(tw, "%s\t%s\n", f.Name, cmpOr(f.Typed, f.Raw).String())
		}
	}
	_ = tw.Flush()
	var missing, dups, foreign int64
	for _, r := range rep.Runs {
		missing, dups, foreign = missing+r.Missing, dups+r.Duplicates, foreign+r.Foreign
	}
	if s.Mode == Publish {
		fmt.Fprintf(w, "every run: %d messages acknowledged\n", s.Messages)
		return
	}
	fmt.Fprintf(w, "every run's messages consumed by its group: %d missing, %d duplicate deliveries, %d from elsewhere\n", missing, dups, foreign)
	if s.Mode == E2E {
		for _, r := range rep.Runs {
			if r.KeptUp != nil && !*r.KeptUp {
				fmt.Fprintf(w, "%s round %d: consumers fell behind (backlog %d when publishing ended, drained in %.2fs)\n", r.Client, r.Round, r.BacklogAtPublishEnd, r.DrainSeconds)
			}
		}
	}
}

func cmpOr(a, b *Stat) *Stat {
	if a != nil {
		return a
	}
	return b
}

func ratio(f Figure) string {
	if f.Ratio == 0 || math.IsInf(f.Ratio, 0) || math.IsNaN(f.Ratio) {
		return "–"
	}
	return fmt.Sprintf("%.2f× (%s is better)", f.Ratio, f.Better)
}

// RatioText writes a Stat of ratios as median and range, 0.93× [0.88–1.02],
// or "–" for none: the report's per-round column and the README's.
func RatioText(s *Stat) string {
	if s == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f× [%.2f–%.2f]", s.Median, s.Min, s.Max)
}

func (s *Stat) String() string {
	if s == nil {
		return "–"
	}
	if len(s.Values) == 1 || s.Min == s.Max {
		return num(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", num(s.Median), num(s.Min), num(s.Max))
}

// num prints a figure with three significant digits, grouping thousands.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		s := fmt.Sprintf("%.0f", v)
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	case a >= 100 || (a >= 10 && v == math.Trunc(v)):
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1 || a == 0:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}
