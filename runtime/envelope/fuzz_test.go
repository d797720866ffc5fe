package envelope_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// wire encodes headers as "key: value" lines, the form the fuzzer mutates.
func wire(fields []envelope.Field) []byte {
	var b bytes.Buffer
	for _, f := range fields {
		b.WriteString(f.Key + ": " + f.Value + "\n")
	}
	return b.Bytes()
}

// unwire decodes the fuzzer's bytes into keys as a binding gives them to
// Parse: each key once (bindings report repeats themselves).
func unwire(data []byte) ([]string, map[string]string) {
	vals := map[string]string{}
	var keys []string
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		if _, dup := vals[k]; !dup {
			keys = append(keys, k)
			vals[k] = v
		}
	}
	return keys, vals
}

// fixtureHeaders seeds the corpus with the headers of every fixture.
func fixtureHeaders(f *testing.F) {
	paths, _ := filepath.Glob("../../fixtures/*/*.json")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require.NoError(f, err)
		var fx struct {
			Headers map[string]string `json:"headers"`
		}
		if json.Unmarshal(data, &fx) != nil {
			continue
		}
		var fields []envelope.Field
		for k, v := range fx.Headers {
			fields = append(fields, envelope.Field{Key: k, Value: v})
		}
		f.Add(wire(fields))
	}
}

// FuzzParse: Parse and Validate never panic, whatever a client writes, and
// headers that parse cleanly survive a round trip through their wire form
// unchanged (a dead letter loses nothing).
func FuzzParse(f *testing.F) {
	h := full()
	f.Add(wire(h.Fields()))
	f.Add([]byte("message_id: x\nretry_count: -1\nblob_size: 99999999999999999999\ntrace_id: 0af7651916cd43dd8448eb211c80319c\n"))
	f.Add([]byte("traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\ntrace_id: zz\nx: \n"))
	fixtureHeaders(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, vals := unwire(data)
		h, err := envelope.Parse(keys, func(k string) string { return vals[k] })
		_ = h.Validate()
		_ = h.CheckSize()
		if err != nil {
			return
		}
		again, err := parse(h.Fields())
		require.NoError(t, err, "the wire form of parsed headers parses")
		assert.Equal(t, h, again)
	})
}

// FuzzTraceparent: a traceparent that parses writes back to one that parses
// to the same context.
func FuzzTraceparent(f *testing.F) {
	for _, s := range []string{
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
		"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
		"00-00000000000000000000000000000000-b7ad6b7169203331-01",
		"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
		envelope.NewTrace().String(),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tc, err := envelope.ParseTraceparent(s)
		if err != nil {
			return
		}
		require.True(t, tc.Valid(), "a parsed traceparent has non-zero ids: %q", s)
		again, err := envelope.ParseTraceparent(tc.String())
		require.NoError(t, err)
		assert.Equal(t, tc, again)
	})
}
