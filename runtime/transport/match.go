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

// Uncovered drops each pattern that another one covers ("trade.*" under
// "*.*") and repeats: a JetStream stream's subjects must not overlap.
func Uncovered(patterns []string) []string {
	var out []string
	for i, p := range patterns {
		covered := false
		for j, o := range patterns {
			covered = covered || (o != p && Match(o, p)) || (o == p && j < i)
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}

// Overlap reports whether some topic matches both patterns: a subscription
// subject that overlaps none of a domain's subtopic shapes can never
// receive anything.
func Overlap(a, b string) bool {
	for {
		at, arest, amore := strings.Cut(a, ".")
		bt, brest, bmore := strings.Cut(b, ".")
		switch {
		case at == ">" || bt == ">":
			return true
		case at != "*" && bt != "*" && at != bt:
			return false
		case !amore || !bmore:
			return amore == bmore
		}
		a, b = arest, brest
	}
}
