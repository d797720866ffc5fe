package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/busctl"
	"github.com/ampyfin/ampy-bus/internal/loadbench"
)

func report(typed, raw float64) loadbench.Report {
	return loadbench.Report{
		Settings: loadbench.Settings{PayloadBytes: 571, Rounds: 3},
		Summary: []loadbench.Figure{{Name: "consume msgs/s", Better: "higher",
			Typed: &loadbench.Stat{Median: typed, Min: typed - 1, Max: typed + 1, Values: []float64{typed - 1, typed, typed + 1}},
			Raw:   &loadbench.Stat{Median: raw, Min: raw, Max: raw, Values: []float64{raw, raw, raw}}, Ratio: typed / raw,
			PerRound: &loadbench.Stat{Median: typed / raw, Min: (typed - 1) / raw, Max: (typed + 1) / raw}}},
	}
}

func TestReplaceRewritesOnlyItsSection(t *testing.T) {
	readme := []byte("# T\n\n## Performance\n\nintro\n\n" + beginMarker + "\nold\n" + endMarker + "\n\n## More\n")
	scenario := func(name string) Scenario {
		return Scenarios[slices.IndexFunc(Scenarios, func(s Scenario) bool { return s.Name == name })]
	}
	nats := scenario("nats-consume-100")
	doc := Doc{Machine: "2 cores", Date: "2026-12-01", Benches: []Bench{{Scenario: nats, Command: "ampybusctl bench --mode consume", Report: report(30000, 40000)}},
		Overhead: Overhead{Command: "go test -bench x", Results: ParseGoBench([]byte(goBenchOutput))}, BinSize: "typed 12.4 MB, raw 11.9 MB: 1.043x"}
	out, err := Replace(readme, doc)
	require.NoError(t, err)
	s := string(out)
	assert.True(t, strings.HasPrefix(s, "# T\n\n## Performance\n\nintro\n\n"+beginMarker))
	assert.True(t, strings.HasSuffix(s, endMarker+"\n\n## More\n"))
	assert.NotContains(t, s, "\nold\n")
	assert.Contains(t, s, "| figure | typed | raw | typed/raw | per round |")
	assert.Contains(t, s, "| consume msgs/s | 30,000 [29,999–30,001] | 40,000 | 0.75× | 0.75× [0.75–0.75] |")
	assert.Contains(t, s, "`ampybusctl bench --mode consume`")
	assert.Contains(t, s, "| Publish/typed/async | 20.5 [20.4–21.2] | 140 [139–141] |")
	assert.Contains(t, s, "typed 12.4 MB, raw 11.9 MB: 1.043x")

	// A partial run keeps the tables it did not run.
	kafka := scenario("kafka-e2e")
	again, err := Replace(out, Doc{Machine: "2 cores", Date: "2026-12-02", Benches: []Bench{{Scenario: kafka, Command: "ampybusctl bench --transport kafka", Report: report(50000, 100000)}}})
	require.NoError(t, err)
	s = string(again)
	assert.Contains(t, s, "| consume msgs/s | 30,000 [29,999–30,001] | 40,000 | 0.75× |", "the NATS table is kept")
	assert.Contains(t, s, "| consume msgs/s | 50,000 [49,999–50,001] | 100,000 | 0.50× |")
	assert.Contains(t, s, "Publish/typed/async", "the overhead table is kept")
	assert.Less(t, strings.Index(s, "table:"+nats.Name), strings.Index(s, "table:"+kafka.Name), "README order")

	_, err = Replace([]byte("no markers"), doc)
	assert.ErrorContains(t, err, "benchdoc markers")
}

const goBenchOutput = `goos: linux
BenchmarkPublish/typed/async-2         	   40000	     20500 ns/op	  9000 B/op	     140 allocs/op
BenchmarkPublish/typed/async-2         	   40000	     20400 ns/op	  9000 B/op	     139 allocs/op
BenchmarkPublish/typed/async-2         	   40000	     21200 ns/op	  9000 B/op	     141 allocs/op
BenchmarkConsume/engine-2              	   40000	     16400 ns/op	     61000 msgs/s	  8000 B/op	      83 allocs/op
PASS
`

func TestParseGoBench(t *testing.T) {
	got := ParseGoBench([]byte(goBenchOutput))
	require.Len(t, got, 2)
	assert.Equal(t, GoBench{Name: "Publish/typed/async", NsPerOp: []float64{20500, 20400, 21200}, Allocs: []float64{140, 139, 141}}, got[0])
	assert.Equal(t, GoBench{Name: "Consume/engine", NsPerOp: []float64{16400}, Allocs: []float64{83}}, got[1])
}

// Every scenario's flags are ampybusctl bench's own: each scenario's
// arguments are parsed by the real command (-h stops it before it runs), so
// a renamed flag fails here, not in the middle of make bench.
func TestScenariosUseBenchFlags(t *testing.T) {
	run := func(args ...string) int {
		return busctl.Main(context.Background(), append([]string{"bench"}, args...), io.Discard, io.Discard, func(string) string { return "" }, false)
	}
	require.Equal(t, 2, run("--no-such-flag", "-h"), "an unknown flag is refused")
	for _, s := range Scenarios {
		assert.Zero(t, run(append(slices.Clone(s.Args), "-h")...), "%s: %v", s.Name, s.Args)
		assert.GreaterOrEqual(t, s.Rounds, defaultRounds, "%s: a README figure is a range over at least %d rounds", s.Name, defaultRounds)
	}
}
