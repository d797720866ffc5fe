package pyemit_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// routeOf is the catalog's route carrying payload fqdn.
func routeOf(t *testing.T, fqdn string) *ampybus.AnyRoute {
	t.Helper()
	for _, d := range generated.Catalog.Domains() {
		for _, r := range generated.Catalog.Routes(d) {
			if r.Spec.Schema.FQDN == fqdn {
				return r
			}
		}
	}
	t.Fatalf("no route carries %s", fqdn)
	return nil
}

func sortedHeaders(h map[string]string) [][2]string {
	out := make([][2]string, 0, len(h))
	for k, v := range h {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// headerVerdict is the set of headers Go's parse and validation name.
func headerVerdict(errs ...error) []string {
	set := map[string]bool{}
	for _, err := range errs {
		for _, e := range flatten(err) {
			var he *envelope.HeaderError
			if errors.As(e, &he) {
				set[he.Header] = true
			}
		}
	}
	return sortedSet(set)
}

// sortedSet is set's members in order, empty (not nil) when there are none,
// as JSON decodes the Python side's [].
func sortedSet(set map[string]bool) []string {
	out := slices.AppendSeq(make([]string, 0, len(set)), maps.Keys(set))
	slices.Sort(out)
	return out
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// brokenHeaders are the ways a message's headers can be wrong.
func brokenHeaders() []func(map[string]string) {
	set := func(k, v string) func(map[string]string) { return func(h map[string]string) { h[k] = v } }
	del := func(k string) func(map[string]string) { return func(h map[string]string) { delete(h, k) } }
	out := []func(map[string]string){
		set("message_id", "412f21f0-56ce-42f1-a479-162cb36871a1"), set("message_id", "nope"), set("message_id", "0190a4d3b1e27c3e9f7a1b2c3d4e5f60"),
		set("message_id", "{0190a4d3-b1e2-7c3e-9f7a-1b2c3d4e5f60}"), set("message_id", "urn:uuid:0190a4d3-b1e2-7c3e-9f7a-1b2c3d4e5f60"),
		set("produced_at", "2025-09-05T21:31:01+02:00"), set("produced_at", "yesterday"), del("produced_at"),
		set("traceparent", "00-00000000000000000000000000000000-0000000000000000-01"), set("traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"), set("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"),
		del("traceparent"), func(h map[string]string) {
			delete(h, "traceparent")
			h["trace_id"] = "4bf92f3577b34da6a3ce929d0e0e4736"
		},
		func(h map[string]string) {
			delete(h, "traceparent")
			h["trace_id"] = "00000000000000000000000000000000"
		},
		set("retry_count", "-1"), set("retry_count", "3"), set("retry_count", "x"), set("retry_count", "+2"),
		set("blob_ref", "s3://b/k"), set("blob_size", "-5"), set("blob_size", "12"),
		set("content_encoding", "br"), set("content_encoding", "gzip"),
		del("schema_fqdn"), del("producer"), del("partition_key"), del("message_id"), set("source", ""),
		set("x-team", "kept"), set("x-big", strings.Repeat("v", 17000)),
		set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1\n"), set("retry_count", "5\n"), set("blob_size", "7\n"),
		set("produced_at", "\u0662\u0660\u0662\u0665-09-05T19:31:01Z"), set("message_id", "X0190a4d3-b1e2-7c3e-9f7a-1b2c3d4e5f60Y"),
		set("message_id", "urn:uu\u0131d:0190a4d3-b1e2-7c3e-9f7a-1b2c3d4e5f60"), set("produced_at", "0001-01-01T00:00:00Z"),
		set("produced_at", "1970-01-01T00:00:00Z"), set("producer", "a\x07\u00a0\u2028\"q\"\\"), set("retry_count", "99999999999999999999"),
		func(h map[string]string) {
			for i := range 70 {
				h[fmt.Sprintf("x-%02d", i)] = "v"
			}
		},
	}
	return out
}

// goVerdict is the set of fields Go's fixture.Validate names for a file.
func goVerdict(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := fixture.Parse(path, data)
	if err != nil {
		return []string{"unreadable"}
	}
	set := map[string]bool{}
	for _, p := range fixture.Validate(generated.Catalog, f) {
		set[p.Field] = true
	}
	return sortedSet(set)
}

// brokenFixtures writes golden fixtures broken each way a fixture can be
// wrong (topic, headers, schema, keys, payload, gzip, blob, dead letter)
// into dir/<domain>/ and returns their paths.
func brokenFixtures(t *testing.T, dir string) []string {
	t.Helper()
	read := func(p string) map[string]any {
		data, err := os.ReadFile(filepath.Join("../../fixtures", p))
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(data, &m))
		return m
	}
	header := func(k, v string) func(map[string]any) {
		return func(m map[string]any) { m["headers"].(map[string]any)[k] = v }
	}
	drop := func(k string) func(map[string]any) {
		return func(m map[string]any) { delete(m["headers"].(map[string]any), k) }
	}
	cases := []struct {
		base   string
		breaks []func(map[string]any)
	}{
		{"orders/typical.json", []func(map[string]any){func(m map[string]any) { m["topic"] = "ampy.prod_orders_v1_requests" }}},
		{"orders/typical.json", []func(map[string]any){func(m map[string]any) { m["topic"] = "ampy.prod.orders.v1.nope" }}},
		{"orders/typical.json", []func(map[string]any){header("message_id", "412f21f0-56ce-42f1-a479-162cb36871a1")}},
		{"orders/typical.json", []func(map[string]any){header("produced_at", "2025-09-05T21:31:01+02:00")}},
		{"orders/typical.json", []func(map[string]any){header("traceparent", "00-00000000000000000000000000000000-0000000000000000-01")}},
		{"orders/typical.json", []func(map[string]any){header("schema_hash", "sha256:00")}},
		{"orders/typical.json", []func(map[string]any){drop("schema_hash")}},
		{"orders/typical.json", []func(map[string]any){header("schema_fqdn", "ampy.orders.v1.Other")}},
		{"orders/typical.json", []func(map[string]any){header("content_type", "application/json")}},
		{"orders/typical.json", []func(map[string]any){header("partition_key", "co_other")}},
		{"orders/typical.json", []func(map[string]any){header("dedupe_key", "x")}},
		{"orders/typical.json", []func(map[string]any){drop("dedupe_key")}},
		{"orders/typical.json", []func(map[string]any){header("content_encoding", "gzip")}},
		{"orders/typical.json", []func(map[string]any){func(m map[string]any) { m["payload"].(map[string]any)["account_id"] = "OTHER" }}},
		{"orders/typical.json", []func(map[string]any){func(m map[string]any) { m["payload"].(map[string]any)["no_such_field"] = 1 }}},
		{"orders/typical.json", []func(map[string]any){func(m map[string]any) { delete(m, "payload"); delete(m, "payload_base64") }}},
		{"orders/typical.json", []func(map[string]any){func(m map[string]any) { m["payload_base64"] = "AAEC" }}},
		{"orders/typical.json", []func(map[string]any){func(m map[string]any) { m["blob"] = "../blobs/x" }}},
		{"orders/typical.json", []func(map[string]any){header("message_id", "nope"), header("partition_key", "x"), header("schema_version", "9.9.9")}},
		{"bars/large_gzip.json", []func(map[string]any){drop("content_encoding")}},
		{"bars/typical.json", []func(map[string]any){func(m map[string]any) { m["topic"] = "ampy.prod.bars.v1.XNYS.MSFT" }}},
		{"dlq/edge_unknown_account.json", []func(map[string]any){drop("dlq_reason")}},
		{"dlq/edge_unknown_account.json", []func(map[string]any){drop("dlq_original_topic")}},
		{"dlq/edge_unknown_account.json", []func(map[string]any){header("dlq_original_topic", "ampy.prod.nope.v1.x")}},
		{"dlq/edge_unknown_account.json", []func(map[string]any){func(m map[string]any) { m["topic"] = "ampy.prod.dlq.v1.bars" }}},
		{"news/large_blob_pointer.json", []func(map[string]any){header("blob_hash", "sha256:00")}},
		{"news/large_blob_pointer.json", []func(map[string]any){header("blob_size", "7")}},
		{"news/large_blob_pointer.json", []func(map[string]any){func(m map[string]any) { delete(m, "blob") }}},
	}
	var out []string
	for i, c := range cases {
		m := read(c.base)
		for _, b := range c.breaks {
			b(m)
		}
		data, err := json.Marshal(m)
		require.NoError(t, err)
		sub := filepath.Join(dir, filepath.Dir(c.base))
		require.NoError(t, os.MkdirAll(sub, 0o755))
		p := filepath.Join(sub, fmt.Sprintf("broken_%02d.json", i))
		require.NoError(t, os.WriteFile(p, data, 0o644))
		out = append(out, p)
	}
	// The blob pointer fixture names its blob relative to itself.
	require.NoError(t, os.CopyFS(filepath.Join(dir, "blobs"), os.DirFS("../../fixtures/blobs")))
	return out
}
