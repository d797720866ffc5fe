package pyemit_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/gen/dynamic"
	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/fixture"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// The cases Go writes for crosscheck.py, and its answers.
type (
	crossCases struct {
		Fixtures    []fixtureCase `json:"fixtures"`
		Headers     [][][2]string `json:"headers"`
		Partitions  []partCase    `json:"partitions"`
		Tokens      []string      `json:"tokens"`
		FormatTimes []int64       `json:"format_times"`
		ParseTimes  []string      `json:"parse_times"`
		Gzip        [][]byte      `json:"gzip"`
		// Verdicts are fixture files, golden and broken, whose problem
		// fields Python must name as Go's fixture.Validate does.
		Verdicts []string `json:"verdicts"`
		// Timestamps are [seconds, nanos] pairs past int64 nanoseconds'
		// reach, formatted as keys write them.
		Timestamps [][2]int64      `json:"timestamps"`
		Unmarshal  []unmarshalCase `json:"unmarshal"`
		Inflate    [][]byte        `json:"inflate"`
		// Keys are payloads on topics whose keys (or refusal) Python must
		// derive as Go does: binds over repeated fields and oneof members,
		// keys read through repeated fields, optional key fields.
		Keys []keyCase `json:"keys"`
	}
	keyCase struct {
		Topic   string `json:"topic"`
		Payload []byte `json:"payload"`
	}
	unmarshalCase struct {
		FQDN string `json:"fqdn"`
		Data []byte `json:"data"`
	}
	fixtureCase struct {
		Path    string      `json:"path"`
		Topic   string      `json:"topic"`
		Headers [][2]string `json:"headers"`
		Stored  []byte      `json:"stored"`
	}
	partCase struct {
		Key []byte `json:"key"`
		N   int    `json:"n"`
	}
	crossAnswers struct {
		Fixtures []struct {
			Headers      []string  `json:"headers"`
			Route        string    `json:"route"`
			Poison       string    `json:"poison"`
			Reserialized []byte    `json:"reserialized"`
			Keys         [2]string `json:"keys"`
			KeyError     string    `json:"key_error"`
			Regzipped    []byte    `json:"regzipped"`
		} `json:"fixtures"`
		Headers      [][]string  `json:"headers"`
		Partitions   []int       `json:"partitions"`
		Tokens       []bool      `json:"tokens"`
		FormatTimes  []string    `json:"format_times"`
		ParseTimes   []*[2]int64 `json:"parse_times"`
		Gzip         [][]byte    `json:"gzip"`
		Verdicts     [][]string  `json:"verdicts"`
		Timestamps   []string    `json:"timestamps"`
		Unmarshal    []bool      `json:"unmarshal"`
		Inflate      []string    `json:"inflate"`
		HeaderErrors [][]string  `json:"header_errors"`
		Keys         []string    `json:"keys"`
	}
)

// The Python runtime and the generated package of the shipped contract
// agree with Go, case by case: every golden fixture's header verdict,
// route, keys, payload bytes and gzip; broken headers of every kind; the
// Kafka partition of random keys; topic tokens; produced_at's text.
func TestPythonAgreesWithGo(t *testing.T) {
	gen, err := filepath.Abs("../../python/generated")
	require.NoError(t, err)
	cases := crossCases{}

	// Golden fixtures.
	paths, err := filepath.Glob("../../fixtures/*/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	var fixtures []*fixture.Fixture
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		require.NoError(t, err)
		f, err := fixture.Parse(p, raw)
		require.NoError(t, err, p)
		fixtures = append(fixtures, f)
		cases.Fixtures = append(cases.Fixtures, fixtureCase{Path: p, Topic: f.Topic, Headers: sortedHeaders(f.Headers), Stored: f.Stored})
	}

	// Broken headers, each way Go refuses them, from a valid fixture's.
	base := fixtures[0].Headers
	for _, mutate := range brokenHeaders() {
		h := map[string]string{}
		for k, v := range base {
			h[k] = v
		}
		mutate(h)
		cases.Headers = append(cases.Headers, sortedHeaders(h))
	}
	cases.Headers = append(cases.Headers, sortedHeaders(base))

	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		key := make([]byte, rng.IntN(40))
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		if i%2 == 0 {
			key = []byte("XNAS.S" + strconv.Itoa(i))
		}
		cases.Partitions = append(cases.Partitions, partCase{Key: key, N: []int{1, 3, 6, 12, 24, 100}[i%6]})
	}
	cases.Tokens = []string{"AAPL", "XNAS", "", "a.b", "a*", ">", "a b", "a\tb", "a\x00", "a\x7f", "é", "日本",
		"a\u00a0b", "a\u0085b", "a\u2028b", "a\u3000b", "a\u200bb", "a\u180eb", "a\x1cb", "BRK/B", "co_20250905_001", "-"}
	for _, ns := range []int64{0, 1, 999_999_999, 1_000_000_000, 1_757_100_661_000_000_000, 1_757_100_661_123_000_000, 1_757_100_661_123_456_789, -1, 253_402_300_799_999_999_999 / 1000} {
		cases.FormatTimes = append(cases.FormatTimes, ns)
	}
	cases.ParseTimes = []string{"2025-09-05T19:31:01Z", "2025-09-05T19:31:01.5Z", "2025-09-05T19:31:01.123456789Z",
		"2025-09-05T19:31:01.1234567891Z", "2025-09-05T19:31:01,5Z", "2025-09-05T19:31:01+02:00", "2025-09-05 19:31:01Z",
		"2025-02-30T00:00:00Z", "2025-09-05T24:00:00Z", "2025-09-05T19:31:60Z", "2025-09-05T19:31Z", "2025-9-05T19:31:01Z", "Z", "",
		"2025-09-05T9:31:01Z", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2024-02-29T23:59:59.999999999Z", "2025-09-05t19:31:01Z",
		"\u0662\u0660\u0662\u0665-09-05T19:31:01Z", "2025-09-05T19:31:01.\u0665Z", "2025-09-05T19:31:01Z\n", "2025-09-05T19:31:01.Z"}
	cases.Timestamps = [][2]int64{{-62135596800, 0}, {253402300799, 999999999}, {253402300800, 0}, {-62135596801, 0}, {-62198755200, 5}, {0, 1}, {1757100661, 120000000}}
	for _, c := range []struct {
		fqdn string
		hex  string
	}{
		{"ampy.bars.v1.BarBatch", ""}, {"ampy.bars.v1.BarBatch", "0a00"}, {"ampy.bars.v1.BarBatch", "12014100"}, {"ampy.bars.v1.BarBatch", "1201410c"},
		{"ampy.bars.v1.BarBatch", "04"}, {"ampy.bars.v1.BarBatch", "0a05"}, {"ampy.bars.v1.BarBatch", "0a020000"}, {"ampy.bars.v1.BarBatch", "0a020800"},
		{"ampy.bars.v1.BarBatch", "1b0801 1c"}, {"ampy.bars.v1.BarBatch", "1b08011c"}, {"ampy.bars.v1.BarBatch", "0f"}, {"ampy.bars.v1.BarBatch", "0e"},
		{"ampy.orders.v1.OrderRequest", "0a03636f31"}, {"ampy.orders.v1.OrderRequest", "0a03636f"},
	} {
		data, err := hex.DecodeString(strings.ReplaceAll(c.hex, " ", ""))
		require.NoError(t, err)
		cases.Unmarshal = append(cases.Unmarshal, unmarshalCase{FQDN: c.fqdn, Data: data})
	}
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	_, _ = gw.Write([]byte("hello"))
	require.NoError(t, gw.Close())
	member := gz.Bytes()
	bomb := bytes.Repeat([]byte{'a'}, 5000)
	var gzBomb bytes.Buffer
	gw = gzip.NewWriter(&gzBomb)
	_, _ = gw.Write(bomb)
	require.NoError(t, gw.Close())
	cases.Inflate = [][]byte{nil, member, append(slices.Clone(member), 0), append(slices.Clone(member), make([]byte, 10)...),
		append(slices.Clone(member), member...), member[:len(member)-3], []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xff\x48"), []byte("plain"), gzBomb.Bytes()}
	for _, n := range []int{0, 1, 100, 4096, 65535, 65536, 70000, 200_000} {
		data := make([]byte, n)
		for j := range data {
			if rng.IntN(3) == 0 {
				data[j] = byte(rng.IntN(256))
			} else {
				data[j] = "ampy bars XNAS AAPL 2025-09-05"[j%30]
			}
		}
		cases.Gzip = append(cases.Gzip, data)
	}

	for _, c := range keyCases() {
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.payload)
		require.NoError(t, err)
		cases.Keys = append(cases.Keys, keyCase{Topic: c.topic, Payload: data})
	}

	dir := t.TempDir()
	cases.Verdicts = append(cases.Verdicts, paths...)
	cases.Verdicts = append(cases.Verdicts, brokenFixtures(t, dir)...)
	in, out := filepath.Join(dir, "cases.json"), filepath.Join(dir, "answers.json")
	data, err := json.Marshal(cases)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(in, data, 0o644))
	runPython(t, gen, "testdata/crosscheck.py", in, out)
	data, err = os.ReadFile(out)
	require.NoError(t, err)
	var ans crossAnswers
	require.NoError(t, json.Unmarshal(data, &ans))

	require.Len(t, ans.Fixtures, len(fixtures))
	for i, f := range fixtures {
		a := ans.Fixtures[i]
		h, herr := f.Envelope()
		assert.Equal(t, headerVerdict(herr, h.Validate()), a.Headers, "%s: headers", f.Path)
		tp, err := generated.Catalog.Resolve(f.Topic)
		if err != nil || tp.Route == nil {
			assert.Equal(t, "none", a.Route, "%s: Go finds no typed route", f.Path)
			continue
		}
		assert.Equal(t, tp.Route.Spec.Schema.FQDN, a.Route, f.Path)
		if h.BlobRef != "" {
			continue // the payload is in the blob store
		}
		wire := f.Stored
		if h.ContentEncoding == envelope.EncodingGzip {
			wire, err = ampybus.GunzipLimit(f.Stored, tp.Domain.InflateLimit())
			require.NoError(t, err, f.Path)
			assert.Equal(t, f.Stored, a.Regzipped, "%s: Python's gzip of the payload is the stored bytes", f.Path)
		}
		p := tp.Route.NewPayload()
		require.NoError(t, proto.Unmarshal(wire, p), f.Path)
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		require.NoError(t, err)
		assert.Equal(t, again, a.Reserialized, "%s: Python marshals the payload to Go's bytes", f.Path)
		keys, err := tp.Route.Keys(tp.Subtopic, p)
		if err != nil {
			assert.Equal(t, err.Error(), a.KeyError, f.Path)
			continue
		}
		assert.Equal(t, [2]string{keys.Partition, keys.Dedupe}, a.Keys, "%s: keys", f.Path)
	}

	require.Len(t, ans.Keys, len(cases.Keys))
	dyn := dynamic.Catalog(shippedContract(t))
	for i, c := range keyCases() {
		want := keysText(generated.Catalog, c.topic, c.payload)
		assert.Equal(t, c.want, want, "%s: the generated Go keys", c.name)
		assert.Equal(t, want, keysText(dyn, c.topic, c.payload), "%s: the contract read at run time (gen/dynamic)", c.name)
		assert.Equal(t, want, ans.Keys[i], "%s: Python", c.name)
	}

	require.Len(t, ans.Verdicts, len(cases.Verdicts))
	for i, p := range cases.Verdicts {
		assert.Equal(t, goVerdict(t, p), ans.Verdicts[i], "%s: the fields fixture.Validate names", p)
	}

	for i, ts := range cases.Timestamps {
		assert.Equal(t, envelope.FormatTime(time.Unix(ts[0], ts[1])), ans.Timestamps[i], "timestamp %v", ts)
	}
	for i, c := range cases.Unmarshal {
		tp := routeOf(t, c.FQDN)
		err := proto.Unmarshal(c.Data, tp.NewPayload())
		assert.Equal(t, err == nil, ans.Unmarshal[i], "%s from %x: Go says %v", c.FQDN, c.Data, err)
	}
	for i, data := range cases.Inflate {
		out, err := ampybus.GunzipLimit(data, 1000)
		want := base64.StdEncoding.EncodeToString(out)
		switch {
		case errors.Is(err, ampybus.ErrDecompressionLimit):
			want = "decompression_limit"
		case err != nil:
			want = "decode_error"
		}
		if len(data) == 0 && err == nil {
			want = "decode_error"
		}
		assert.Equal(t, want, ans.Inflate[i], "inflate %x: Go says %v", data, err)
	}

	require.Len(t, ans.Headers, len(cases.Headers))
	for i, hs := range cases.Headers {
		keys := make([]string, len(hs))
		values := map[string]string{}
		for j, kv := range hs {
			keys[j], values[kv[0]] = kv[0], kv[1]
		}
		h, err := envelope.Parse(keys, func(k string) string { return values[k] })
		assert.Equal(t, headerVerdict(err, h.Validate()), ans.Headers[i], "broken headers %d: %v", i, hs)
		var texts []string
		for _, e := range append(flatten(err), flatten(h.Validate())...) {
			texts = append(texts, e.Error())
		}
		sort.Strings(texts)
		if texts == nil {
			texts = []string{}
		}
		assert.Equal(t, texts, ans.HeaderErrors[i], "broken headers %d: the errors' text", i)
	}

	part := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for i, c := range cases.Partitions {
		want := part.Partition(&kgo.Record{Key: c.Key}, c.N)
		assert.Equal(t, want, ans.Partitions[i], "partition of %q among %d", c.Key, c.N)
		// The NATS subject's partition token is the same function.
		assert.Equal(t, int32(want), transport.Partition(string(c.Key), c.N), "transport.Partition of %q among %d", c.Key, c.N)
	}
	for i, tok := range cases.Tokens {
		assert.Equal(t, ampybus.ValidToken(tok), ans.Tokens[i], "token %q", tok)
	}
	for i, ns := range cases.FormatTimes {
		assert.Equal(t, envelope.FormatTime(time.Unix(0, ns)), ans.FormatTimes[i], "format %d", ns)
	}
	for i, s := range cases.ParseTimes {
		got, err := envelope.ParseTime(s)
		if err != nil {
			assert.Nil(t, ans.ParseTimes[i], "Go refuses %q", s)
			continue
		}
		if assert.NotNil(t, ans.ParseTimes[i], "Go reads %q", s) {
			assert.Equal(t, [2]int64{got.Unix(), int64(got.Nanosecond())}, *ans.ParseTimes[i], "parse %q", s)
		}
	}
	for i, d := range cases.Gzip {
		var buf bytes.Buffer
		w, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		_, _ = w.Write(d)
		require.NoError(t, w.Close())
		assert.True(t, bytes.Equal(buf.Bytes(), ans.Gzip[i]), "gzip of %d bytes: Python's is byte-identical to Go's", len(d))
	}
}
