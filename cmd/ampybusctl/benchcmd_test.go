package main_test

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ampybusctl bench against a broker in a child process.

// bench runs typed and raw against a broker it starts as a child process,
// so the figures are the client's alone, and stops the child when done.
func TestBenchCompareWithBrokerChild(t *testing.T) {
	for _, kind := range []string{"nats", "kafka"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			profiles := t.TempDir()
			out := ok(t, nil, "bench", "--transport", kind, "--compare", "--rounds", "1", "--messages", "2000", "--json", "--profile", profiles)
			var rep struct {
				Settings struct {
					Mode      string `json:"mode"`
					Transport string `json:"transport"`
					Messages  int    `json:"messages"`
				} `json:"settings"`
				Broker struct {
					URL   string `json:"url"`
					Where string `json:"where"`
					PID   int    `json:"pid"`
				} `json:"broker"`
				Runs []struct {
					Client      string                           `json:"client"`
					Published   int                              `json:"published"`
					Consumed    int                              `json:"consumed"`
					Missing     int                              `json:"missing"`
					Duplicates  int                              `json:"duplicates"`
					PublishRate float64                          `json:"publish_msgs_per_sec"`
					ConsumeRate float64                          `json:"consume_msgs_per_sec"`
					CPU         float64                          `json:"cpu_us_per_msg"`
					BrokerCPU   float64                          `json:"broker_cpu_us_per_msg"`
					Allocs      float64                          `json:"allocs_per_msg"`
					Goroutines  int                              `json:"peak_goroutines"`
					PeakHeap    uint64                           `json:"peak_heap_inuse_bytes"`
					Latency     *struct{ P50, P99, Max float64 } `json:"latency_us"`
					Profiles    []string                         `json:"profiles"`
				} `json:"runs"`
				Summary []struct {
					Name   string                    `json:"name"`
					Better string                    `json:"better"`
					Ratio  float64                   `json:"ratio_typed_over_raw"`
					Typed  *struct{ Median float64 } `json:"typed"`
					Raw    *struct{ Median float64 } `json:"raw"`
				} `json:"summary"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
			assert.Equal(t, "e2e", rep.Settings.Mode)
			assert.Equal(t, kind, rep.Settings.Transport)
			assert.Equal(t, "child process", rep.Broker.Where)
			assert.True(t, strings.HasPrefix(rep.Broker.URL, kind+"://"), rep.Broker.URL)
			require.Positive(t, rep.Broker.PID)
			require.Len(t, rep.Runs, 2)
			clients := map[string]bool{}
			for _, r := range rep.Runs {
				clients[r.Client] = true
				assert.Equal(t, 2000, r.Published, r.Client)
				assert.Equal(t, 2000, r.Consumed, r.Client)
				assert.Zero(t, r.Missing+r.Duplicates, r.Client)
				assert.Positive(t, r.PublishRate, r.Client)
				assert.Positive(t, r.ConsumeRate, r.Client)
				assert.Positive(t, r.CPU, r.Client)
				if kind == "nats" && runtime.GOOS == "linux" {
					// kfake's share of 2,000 messages can be under /proc's 10 ms.
					assert.Positive(t, r.BrokerCPU, "%s: the broker child's CPU is read from /proc", r.Client)
				}
				assert.Positive(t, r.Allocs, r.Client)
				assert.Positive(t, r.Goroutines, r.Client)
				assert.Positive(t, r.PeakHeap, r.Client)
				require.NotNil(t, r.Latency, r.Client)
				assert.Positive(t, r.Latency.P50, r.Client)
				assert.LessOrEqual(t, r.Latency.P50, r.Latency.P99, r.Client)
				assert.LessOrEqual(t, r.Latency.P99, r.Latency.Max, r.Client)
				// --profile: the client's and the broker child's CPU profiles,
				// and the client's allocations at both ends of the window.
				require.Len(t, r.Profiles, 4, r.Client)
				for i, p := range []struct{ suffix, sampled string }{
					{".client.pprof", "nanoseconds"}, {".allocs-base.pprof", "alloc_objects"},
					{".allocs.pprof", "alloc_objects"}, {".broker.pprof", "nanoseconds"},
				} {
					f := r.Profiles[i]
					assert.Equal(t, profiles, filepath.Dir(f))
					assert.True(t, strings.HasPrefix(filepath.Base(f), kind+"-e2e-"+r.Client+"-") && strings.HasSuffix(f, p.suffix), f)
					assert.Contains(t, pprofStrings(t, f), p.sampled, "%s samples %s", f, p.sampled)
				}
			}
			assert.Equal(t, map[string]bool{"typed": true, "raw": true}, clients)
			names := map[string]bool{}
			for _, f := range rep.Summary {
				names[f.Name] = true
				if kind == "kafka" && f.Name == "broker CPU µs/msg" && (f.Typed == nil || f.Raw == nil) {
					continue // kfake's share of 2,000 messages can be under /proc's 10 ms (above)
				}
				require.NotNil(t, f.Typed, f.Name)
				require.NotNil(t, f.Raw, f.Name)
				assert.Contains(t, []string{"higher", "lower"}, f.Better, f.Name)
			}
			for _, n := range []string{"publish msgs/s", "consume msgs/s", "latency p99 ms", "CPU µs/msg", "allocs/msg"} {
				assert.True(t, names[n], "summary has %s", n)
			}
			// The child was stopped and reaped before the command exited.
			assert.ErrorIs(t, syscall.Kill(rep.Broker.PID, 0), syscall.ESRCH, "broker child %d still running", rep.Broker.PID)
		})
	}
}

// pprofStrings is a profile's decompressed bytes: a gzipped protobuf
// whose string table names the sample types.
func pprofStrings(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err, "%s is not gzipped", path)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return string(b)
}
