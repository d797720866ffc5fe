package envelope

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// TraceContext is a W3C trace context (https://www.w3.org/TR/trace-context/).
// The bus writes it as the traceparent header so any tracer can join the trace.
type TraceContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// NewTrace starts a new sampled trace with random, non-zero ids.
func NewTrace() TraceContext {
	var tc TraceContext
	fillNonZero(tc.TraceID[:])
	fillNonZero(tc.SpanID[:])
	tc.Flags = 0x01
	return tc
}

// Child returns a new span in the same trace, for a message published while
// handling another.
func (tc TraceContext) Child() TraceContext {
	c := tc
	fillNonZero(c.SpanID[:])
	return c
}

// Valid reports whether both ids are non-zero, as the W3C spec requires.
func (tc TraceContext) Valid() bool {
	return tc.TraceID != [16]byte{} && tc.SpanID != [8]byte{}
}

// TraceIDHex is the 32-hex-digit trace id that logs and the seed's trace_id use.
func (tc TraceContext) TraceIDHex() string { return hex.EncodeToString(tc.TraceID[:]) }

// SpanIDHex is the 16-hex-digit span id.
func (tc TraceContext) SpanIDHex() string { return hex.EncodeToString(tc.SpanID[:]) }

// String is the traceparent wire form: 00-<trace id>-<span id>-<flags>.
func (tc TraceContext) String() string {
	var b [traceparentLen]byte
	return string(tc.AppendTo(b[:0]))
}

// AppendTo appends the traceparent wire form to b.
func (tc TraceContext) AppendTo(b []byte) []byte {
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tc.TraceID[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, tc.SpanID[:])
	b = append(b, '-')
	return hex.AppendEncode(b, []byte{tc.Flags})
}

// traceparentLen is the length of a version-00 traceparent.
const traceparentLen = 55

// ParseTraceparent reads a version-00 traceparent header.
func ParseTraceparent(s string) (TraceContext, error) {
	var tc TraceContext
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return tc, errors.New("not a traceparent: want 00-<32 hex>-<16 hex>-<2 hex>")
	}
	if s[:2] != "00" {
		return tc, fmt.Errorf("traceparent version %q is not supported; want 00", s[:2])
	}
	var flags [1]byte
	if _, err := hex.Decode(tc.TraceID[:], []byte(s[3:35])); err != nil {
		return tc, errors.New("trace id is not 32 hex digits")
	}
	if _, err := hex.Decode(tc.SpanID[:], []byte(s[36:52])); err != nil {
		return tc, errors.New("span id is not 16 hex digits")
	}
	if _, err := hex.Decode(flags[:], []byte(s[53:])); err != nil {
		return tc, errors.New("flags are not 2 hex digits")
	}
	tc.Flags = flags[0]
	if !tc.Valid() {
		return tc, errors.New("trace and span ids must be non-zero")
	}
	return tc, nil
}

// traceFromLegacyID adopts the seed's bare 32-hex trace_id, giving it a fresh span.
func traceFromLegacyID(s string) (TraceContext, error) {
	var tc TraceContext
	if len(s) != 32 {
		return tc, errors.New("trace_id is not 32 hex digits")
	}
	if _, err := hex.Decode(tc.TraceID[:], []byte(s)); err != nil {
		return tc, errors.New("trace_id is not 32 hex digits")
	}
	if tc.TraceID == [16]byte{} {
		return tc, errors.New("trace_id is all zeros")
	}
	fillNonZero(tc.SpanID[:])
	tc.Flags = 0x01
	return tc, nil
}

func fillNonZero(b []byte) {
	for {
		if _, err := rand.Read(b); err != nil {
			panic("envelope: crypto/rand failed: " + err.Error())
		}
		for _, x := range b {
			if x != 0 {
				return
			}
		}
	}
}

type traceKey struct{}

// ContextWithTrace returns ctx carrying tc; a publish under that context
// continues the trace as a child span.
func ContextWithTrace(ctx context.Context, tc TraceContext) context.Context {
	return context.WithValue(ctx, traceKey{}, tc)
}

// TraceFromContext returns the trace ctx carries, if any.
func TraceFromContext(ctx context.Context) (TraceContext, bool) {
	tc, ok := ctx.Value(traceKey{}).(TraceContext)
	return tc, ok && tc.Valid()
}
