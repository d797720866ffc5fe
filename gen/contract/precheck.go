package contract

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Size bounds: what the brokers carry and what a consumer can hold.
const (
	// MaxPayloadLimit is NATS's hard ceiling on one message (its max_payload setting).
	MaxPayloadLimit = 64 << 20
	// MaxInflatedLimit bounds a payload after decompression.
	MaxInflatedLimit = 1 << 30
)

// maxDepth bounds how deeply a contract nests; the deepest a valid one goes
// is six (domains → name → subtopics → list → bind → value).
const maxDepth = 32

// precheck refuses input that is not YAML text before the YAML parser sees
// it, at the line and column of the first offending byte: binary data,
// bytes that are not UTF-8, tabs in indentation (which YAML forbids), and
// bracket nesting past maxDepth. The parser would report each without a
// position, or not say what it found. It also returns where the first
// quoted value that runs past its line opens (a contract needs none), for
// when the parser fails on it.
func precheck(file string, data []byte) (*Error, Pos) {
	line, col := 1, 1
	lineStart := true // only spaces and tabs so far on this line
	var tabAt Pos
	depth := 0
	var quote byte          // the open quote of a quoted scalar, or 0
	var quoteAt, spanAt Pos // where the open quote opened; the first that ran past its line
	var prev rune           // the last rune on this line that is not a space
	comment := false
	errAt := func(problem, fix string) *Error {
		return &Error{File: file, Pos: Pos{Line: line, Column: col}, Problem: problem, Fix: fix}
	}
	fail := func(e *Error) (*Error, Pos) { return e, Pos{} }
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return fail(errAt(fmt.Sprintf("byte 0x%02x is not UTF-8 text", data[i]), "save the contract as UTF-8"))
		case r == '\n':
			if quote != 0 && spanAt.Line == 0 {
				spanAt = quoteAt
			}
			line, col, i = line+1, 1, i+size
			lineStart, tabAt, comment, prev = true, Pos{}, false, 0 // a quoted scalar may go on
			continue
		case r == 0xFEFF && i == 0: // a byte-order mark
		case r < 0x20 && r != '\t' && r != '\r', r == 0x7f:
			return fail(errAt(fmt.Sprintf("control character 0x%02x: the file holds binary data, not YAML text", r), "point the generator at the contract's YAML file"))
		case lineStart && r == '\t':
			if tabAt.Line == 0 {
				tabAt = Pos{Line: line, Column: col}
			}
		case lineStart && r == ' ':
		case lineStart:
			lineStart = false
			if tabAt.Line != 0 && r != '#' && r != '\r' {
				return fail(&Error{File: file, Pos: tabAt, Problem: "a tab in the indentation; YAML indents with spaces only", Fix: "replace the tab with spaces"})
			}
		}
		if !lineStart && !comment {
			switch {
			case quote != 0:
				if byte(r) == quote && r < utf8.RuneSelf {
					quote = 0
				}
			case r == '#' && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t'):
				comment = true
			case (r == '"' || r == '\'') && (prev == 0 || strings.ContainsRune(":[{,-", prev)):
				quote, quoteAt = byte(r), Pos{Line: line, Column: col} // a quote opens a scalar only where one starts
			case r == '[' || r == '{':
				if depth++; depth > maxDepth {
					return fail(errAt(fmt.Sprintf("nesting deeper than %d levels", maxDepth), "a contract nests a few levels deep: close the brackets"))
				}
			case r == ']' || r == '}':
				depth = max(depth-1, 0)
			}
		}
		if r != ' ' && r != '\t' {
			prev = r
		}
		col, i = col+1, i+size
	}
	if quote != 0 && spanAt.Line == 0 {
		spanAt = quoteAt
	}
	return nil, spanAt
}

// tooDeep finds the first node nested past maxDepth (block nesting, which
// precheck's bracket count does not see).
func tooDeep(n *yaml.Node, depth int) *yaml.Node {
	if depth > maxDepth {
		return n
	}
	for _, c := range n.Content {
		if d := tooDeep(c, depth+1); d != nil {
			return d
		}
	}
	return nil
}
