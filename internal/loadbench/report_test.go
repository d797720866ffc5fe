package loadbench

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNum(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0.00"}, {0.0123, "0.012"}, {1.5, "1.50"}, {12.34, "12.3"}, {46, "46"},
		{123.4, "123"}, {45210.4, "45,210"}, {1234567, "1,234,567"}, {-2500, "-2,500"},
	} {
		assert.Equal(t, tc.want, num(tc.v), "%v", tc.v)
	}
}

// The summary gives each figure per client as a median with its range, and
// typed÷raw of the medians; figures a mode does not measure are left out.
func TestSummary(t *testing.T) {
	runs := []*Result{
		{Client: Typed, PublishRate: 90, ConsumeRate: 80, CPUPerMsg: 30, Latency: &Latency{P50: 2000, P99: 5000}},
		{Client: Raw, PublishRate: 100, ConsumeRate: 100, CPUPerMsg: 20, Latency: &Latency{P50: 1000, P99: 4000}},
		{Client: Typed, PublishRate: 110, ConsumeRate: 60, CPUPerMsg: 34, Latency: &Latency{P50: 3000, P99: 7000}},
		{Client: Raw, PublishRate: 100, ConsumeRate: 120, CPUPerMsg: 22, Latency: &Latency{P50: 1000, P99: 6000}},
		{Client: Typed, PublishRate: 95, ConsumeRate: 70, CPUPerMsg: 32, Latency: &Latency{P50: 2500, P99: 6000}},
		{Client: Raw, PublishRate: 100, ConsumeRate: 110, CPUPerMsg: 21, Latency: &Latency{P50: 1000, P99: 5000}},
	}
	byName := map[string]Figure{}
	for _, f := range summarize(E2E, runs) {
		byName[f.Name] = f
	}
	tests := []struct {
		name       string
		typed, raw Stat
		ratio      float64
		better     string
	}{
		{"publish msgs/s", Stat{Median: 95, Min: 90, Max: 110}, Stat{Median: 100, Min: 100, Max: 100}, 0.95, higher},
		{"consume msgs/s", Stat{Median: 70, Min: 60, Max: 80}, Stat{Median: 110, Min: 100, Max: 120}, 70.0 / 110, higher},
		{"CPU µs/msg", Stat{Median: 32, Min: 30, Max: 34}, Stat{Median: 21, Min: 20, Max: 22}, 32.0 / 21, lower},
		{"latency p50 ms", Stat{Median: 2.5, Min: 2, Max: 3}, Stat{Median: 1, Min: 1, Max: 1}, 2.5, lower},
		{"latency p99 ms", Stat{Median: 6, Min: 5, Max: 7}, Stat{Median: 5, Min: 4, Max: 6}, 1.2, lower},
	}
	for _, tc := range tests {
		f, ok := byName[tc.name]
		require.True(t, ok, tc.name)
		assert.Equal(t, tc.better, f.Better, tc.name)
		assert.Equal(t, [3]float64{tc.typed.Median, tc.typed.Min, tc.typed.Max}, [3]float64{f.Typed.Median, f.Typed.Min, f.Typed.Max}, tc.name)
		assert.Equal(t, [3]float64{tc.raw.Median, tc.raw.Min, tc.raw.Max}, [3]float64{f.Raw.Median, f.Raw.Min, f.Raw.Max}, tc.name)
		assert.InDelta(t, tc.ratio, f.Ratio, 1e-9, tc.name)
	}
	assert.NotContains(t, byName, "consumer startup s", "consume mode's figure")

	rep := &Report{Settings: Settings{Mode: E2E, Transport: "nats", Rounds: 3}, Broker: BrokerInfo{URL: "nats://x", Where: "child process", PID: 7}, Runs: runs, Summary: summarize(E2E, runs)}
	var out bytes.Buffer
	rep.Print(&out)
	assert.Contains(t, out.String(), "broker child process, pid 7")
	assert.Regexp(t, `publish msgs/s +95 \[90–110\] +100 +0\.95× \(higher is better\)`, out.String())
	assert.Regexp(t, `CPU µs/msg +32 \[30–34\] +21 \[20–22\] +1\.52× \(lower is better\)`, out.String())
}

// Each round's two runs ran back to back: the per-round ratio pairs them,
// whatever their order, and leaves out a round with one client only.
func TestPerRoundRatio(t *testing.T) {
	runs := []*Result{
		{Client: Typed, Round: 1, PublishRate: 90, CPUPerMsg: 30},
		{Client: Raw, Round: 1, PublishRate: 100, CPUPerMsg: 20},
		{Client: Raw, Round: 2, PublishRate: 50, CPUPerMsg: 40}, // a slow spell: both runs of the round
		{Client: Typed, Round: 2, PublishRate: 48, CPUPerMsg: 44},
		{Client: Typed, Round: 3, PublishRate: 105, CPUPerMsg: 21},
		{Client: Raw, Round: 3, PublishRate: 100, CPUPerMsg: 21},
		{Client: Typed, Round: 4, PublishRate: 1, CPUPerMsg: 1}, // its raw run never came
	}
	tests := []struct {
		name             string
		median, min, max float64
		values           []float64
	}{
		{"publish msgs/s", 0.96, 0.9, 1.05, []float64{0.9, 0.96, 1.05}},
		{"CPU µs/msg", 1.1, 1, 1.5, []float64{1.5, 1.1, 1}},
	}
	byName := map[string]Figure{}
	for _, f := range summarize(Publish, runs) {
		byName[f.Name] = f
	}
	for _, tc := range tests {
		f := byName[tc.name]
		require.NotNil(t, f.PerRound, tc.name)
		assert.InDelta(t, tc.median, f.PerRound.Median, 1e-9, tc.name)
		assert.InDelta(t, tc.min, f.PerRound.Min, 1e-9, tc.name)
		assert.InDelta(t, tc.max, f.PerRound.Max, 1e-9, tc.name)
		assert.InDeltaSlice(t, tc.values, f.PerRound.Values, 1e-9, tc.name)
	}
	// The medians' ratio moves with the slow spell and the lone run; the
	// rounds' does not.
	assert.InDelta(t, 69.0/100, byName["publish msgs/s"].Ratio, 1e-9)

	rep := &Report{Settings: Settings{Mode: Publish, Transport: "kafka", Rounds: 4}, Runs: runs, Summary: summarize(Publish, runs)}
	var out bytes.Buffer
	rep.Print(&out)
	assert.Contains(t, out.String(), "per round [range]")
	assert.Regexp(t, `publish msgs/s .* 0\.69× \(higher is better\) +0\.96× \[0\.90–1\.05\]`, out.String())

	one := summarize(Publish, runs[:2])
	assert.Nil(t, one[0].PerRound, "one round has no range of rounds")
}
