package transport

import "strings"

// Match reports whether topic matches pattern in NATS wildcard syntax: *
// matches one token, a trailing > matches one or more. Bindings without
// native subject filters (Kafka) filter with it, so patterns mean the same
// on every transport.
func Match(pattern, topic string) bool {
	for {
		p, prest, pmore := strings.Cut(pattern, ".")
		t, trest, tmore := strings.Cut(topic, ".")
		switch {
		case p == ">":
			return !pmore && t != ""
		case p != "*" && p != t:
			return false
		case !pmore || !tmore:
			return pmore == tmore
		}
		pattern, topic = prest, trest
	}
}
