package contract

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

var literalRE = regexp.MustCompile(`^[A-Za-z0-9_@-]+$`)

// patternError says what is wrong with a pattern and where, as a byte offset.
type patternError struct {
	offset       int
	problem, fix string
}

// ParsePattern splits a subtopic pattern such as "trade.{symbol}" into
// literal and parameter tokens.
func ParsePattern(text string) (Pattern, *patternError) {
	p := Pattern{Text: text}
	if text == "" {
		return p, &patternError{0, "the pattern is empty", `write literal tokens and {parameters} separated by dots, e.g. "{mic}.{symbol}"`}
	}
	if i := strings.IndexAny(text, "*>"); i >= 0 {
		return p, &patternError{i, fmt.Sprintf("has the wildcard %q", text[i]), "name each variable token as a {parameter}, e.g. \"{mic}.{symbol}\"; wildcards (* and >) belong in subscription subjects, not in the contract"}
	}
	if i := strings.IndexFunc(text, unicode.IsSpace); i >= 0 {
		return p, &patternError{i, "has whitespace", "remove it: topic tokens hold no spaces"}
	}
	off := 0
	for _, tok := range strings.Split(text, ".") {
		switch {
		case tok == "":
			return p, &patternError{off, "has an empty token (two dots, or a leading or trailing dot)", "separate tokens with single dots"}
		case strings.Count(tok, "{") > 1 || strings.Count(tok, "}") > 1:
			return p, &patternError{off, fmt.Sprintf("token %q holds more than one parameter", tok), "give each {parameter} its own dot-separated token, e.g. \"{venue}.{pair}\""}
		case strings.HasPrefix(tok, "{") && strings.HasSuffix(tok, "}"):
			name := tok[1 : len(tok)-1]
			if !identRE.MatchString(name) {
				return p, &patternError{off + 1, fmt.Sprintf("parameter {%s} is not a valid name", name), "name parameters in lower_snake_case, e.g. {symbol}"}
			}
			for _, t := range p.Tokens {
				if t.Param == name {
					return p, &patternError{off, fmt.Sprintf("parameter {%s} appears twice", name), "give each parameter its own name"}
				}
			}
			p.Tokens = append(p.Tokens, Token{Param: name})
		case strings.ContainsAny(tok, "{}"):
			return p, &patternError{off, fmt.Sprintf("token %q mixes text and a parameter", tok), "make each dot-separated token either literal text or one whole {parameter}"}
		case !literalRE.MatchString(tok):
			return p, &patternError{off, fmt.Sprintf("literal token %q may hold only letters, digits, _, - and @", tok), "write the token with those characters only"}
		default:
			p.Tokens = append(p.Tokens, Token{Literal: tok})
		}
		off += len(tok) + 1
	}
	return p, nil
}

// patternsOverlap reports whether some topic could match both patterns.
func patternsOverlap(a, b Pattern) bool {
	if len(a.Tokens) != len(b.Tokens) {
		return false
	}
	for i := range a.Tokens {
		x, y := a.Tokens[i], b.Tokens[i]
		if x.Literal != "" && y.Literal != "" && x.Literal != y.Literal {
			return false
		}
	}
	return true
}
