package ampybus

import (
	"strings"

	controlv1 "github.com/ampyfin/ampy-bus/proto/ampy/control/v1"
)

// ReplayFor turns a ReplayRequest from the control topic into the window a
// subscriber of spec should replay, and reports whether the request concerns
// it at all: the bus's env, the spec's domain and version (empty version:
// any), and a subject pattern that can match the spec's topics (empty: the
// whole domain). Generated Serve<Subtopic>Replays functions call it.
func ReplayFor(b *Bus, spec *SubtopicSpec, req *controlv1.ReplayRequest) (ReplayWindow, bool) {
	d := spec.Domain
	if req.GetEnv() != b.env || req.GetDomain() != d.Name || (req.GetVersion() != "" && req.GetVersion() != d.Version) {
		return ReplayWindow{}, false
	}
	subject := req.GetSubject()
	if subject != "" && !patternsMeet(subject, d.Prefix(b.env)+"."+subtopicWildcards(spec.Pattern)) {
		return ReplayWindow{}, false
	}
	w := ReplayWindow{Key: req.GetPartitionKey(), RequestID: req.GetRequestId(), Subject: subject}
	if t := req.GetStart(); t != nil {
		w.Start = t.AsTime()
	}
	if t := req.GetEnd(); t != nil {
		w.End = t.AsTime()
	}
	return w, true
}

// subtopicWildcards turns a contract pattern into a subscription pattern:
// {mic}.{symbol} → *.*.
func subtopicWildcards(pattern string) string {
	toks := strings.Split(pattern, ".")
	for i, t := range toks {
		if strings.HasPrefix(t, "{") {
			toks[i] = "*"
		}
	}
	return strings.Join(toks, ".")
}

// patternsMeet reports whether some topic matches both patterns.
func patternsMeet(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i < len(at) && at[i] == ">":
			return i < len(bt)
		case i < len(bt) && bt[i] == ">":
			return i < len(at)
		case i == len(at) || i == len(bt):
			return len(at) == len(bt)
		case at[i] != "*" && bt[i] != "*" && at[i] != bt[i]:
			return false
		}
	}
}

// ReplayServerOptions derives, from a live subscription's options, those of
// the control-topic subscription that serves its replays: the group gains
// ".replays", so each group serves each request once.
func ReplayServerOptions(opts ...SubscribeOption) []SubscribeOption {
	var o subOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.group == "" {
		return nil
	}
	return []SubscribeOption{Durable(o.group + ".replays")}
}
