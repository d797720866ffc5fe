package transport

import (
	"slices"
	"strings"
)

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

// MergeShapes makes a set of subtopic shapes a JetStream stream can list:
// two that overlap without one covering the other (binance.* and *.latest,
// from two versions of a contract) become one that covers both (*.*), and
// covered ones go (Uncovered).
func MergeShapes(shapes []string) []string {
	out := Uncovered(shapes)
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(out) && !merged; i++ {
			for j := i + 1; j < len(out) && !merged; j++ {
				if Overlap(out[i], out[j]) {
					g := generalize(out[i], out[j])
					out = Uncovered(append(append(out[:j:j], out[j+1:]...), g))
					merged = true
				}
			}
		}
	}
	return out
}

// generalize is the narrowest shape covering two overlapping ones: equal
// tokens kept, others *, and > when their lengths differ.
func generalize(a, b string) string {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	if len(at) != len(bt) || slices.Contains(at, ">") || slices.Contains(bt, ">") {
		return ">"
	}
	out := make([]string, len(at))
	for i := range at {
		out[i] = at[i]
		if at[i] != bt[i] {
			out[i] = "*"
		}
	}
	return strings.Join(out, ".")
}
