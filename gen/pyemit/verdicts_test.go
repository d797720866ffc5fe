package pyemit_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/fixture"
)

// What TestPythonAgreesWithGo compares: Go's verdict on each header set and
// fixture, in the order-free form both sides print.

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
