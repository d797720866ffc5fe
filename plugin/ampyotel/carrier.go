package ampyotel

import (
	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// carrier lets an OpenTelemetry propagator read and write the envelope:
// traceparent is the envelope's own field, other fields (tracestate,
// baggage) travel as extra headers.
type carrier struct{ h *envelope.Headers }

func (c carrier) Get(key string) string {
	if key == envelope.HeaderTraceparent {
		if !c.h.Trace.Valid() {
			return ""
		}
		return c.h.Trace.String()
	}
	return c.h.Extra[key]
}

func (c carrier) Set(key, value string) {
	if key == envelope.HeaderTraceparent {
		if tc, err := envelope.ParseTraceparent(value); err == nil {
			c.h.Trace = tc
		}
		return
	}
	if c.h.Extra == nil {
		c.h.Extra = map[string]string{}
	}
	c.h.Extra[key] = value
}

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c.h.Extra)+1)
	if c.h.Trace.Valid() {
		keys = append(keys, envelope.HeaderTraceparent)
	}
	for k := range c.h.Extra {
		keys = append(keys, k)
	}
	return keys
}
