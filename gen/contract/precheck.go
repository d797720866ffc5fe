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
// is six (domains → name → versions → v2 → subtopics → list → bind).
const maxDepth = 32

// precheck refuses input that is not YAML text before the YAML parser sees
// it, at the line and column of the first offending byte: bytes that are not
// UTF-8, and control characters (binary data). The parser would report
// either without a position.
func precheck(file string, data []byte) *Error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		at := Pos{Line: line, Column: col}
		switch {
		case r == utf8.RuneError && size <= 1:
			return &Error{File: file, Pos: at, Problem: fmt.Sprintf("byte 0x%02x is not UTF-8 text", data[i]), Fix: "save the contract as UTF-8"}
		case r == '\n':
			line, col, i = line+1, 1, i+size
			continue
		case r == 0xFEFF && i == 0: // a byte-order mark
		case r < 0x20 && r != '\t' && r != '\r', r == 0x7f:
			return &Error{File: file, Pos: at, Problem: fmt.Sprintf("control character 0x%02x: the file holds binary data, not YAML text", r), Fix: "point the generator at the contract's YAML file"}
		}
		col, i = col+1, i+size
	}
	return nil
}

// explainYAMLError gives a parser failure the position and words yaml.v3
// leaves out, where a scan of the text finds the cause: a tab in the
// indentation, nesting past its depth limit, a quoted value left open. It
// returns nil to keep the parser's own report.
func explainYAMLError(file string, data []byte, err error) *Error {
	msg := err.Error()
	sc := scanYAML(data)
	switch {
	case strings.Contains(msg, "tab character") && sc.indentTab.Line > 0:
		return &Error{File: file, Pos: sc.indentTab, Problem: "a tab in the indentation; YAML indents with spaces only", Fix: "replace the tab with spaces"}
	case strings.Contains(msg, "exceeded max depth"):
		at := sc.deep
		if at.Line == 0 {
			at = Pos{Line: 1}
		}
		return &Error{File: file, Pos: at, Problem: fmt.Sprintf("nesting deeper than %d levels", maxDepth), Fix: "a contract nests a few levels deep: close the brackets"}
	}
	if sc.openQuote.Line > 0 {
		// The parser reports where it gave up, often lines away; what it
		// said stays in the message.
		said := strings.TrimPrefix(msg, "yaml: ")
		return &Error{File: file, Pos: sc.openQuote, Problem: "this quoted value is not closed on its line (the YAML parser then reports: " + said + ")", Fix: "close the quote on the same line"}
	}
	return nil
}

// scanned is what a line-by-line look at YAML text finds for explaining a
// parser failure; each is the first of its kind, or zero.
type scanned struct {
	indentTab Pos // a tab in a line's leading whitespace before content
	deep      Pos // a flow bracket opening past maxDepth
	openQuote Pos // a quoted scalar that does not close on its line
}

// scanYAML is a best-effort reading of YAML text: comments (a # at a line's
// start or after whitespace), quoted scalars that start where a value can
// start (after ": ", a flow indicator, or a list item's "- "), and flow
// brackets outside them. It only places errors the parser has reported.
func scanYAML(data []byte) scanned {
	var sc scanned
	depth := 0
	var quote byte
	var lastQuote Pos // where the open quote opened
	for n, text := range strings.Split(string(data), "\n") {
		line := n + 1
		text = strings.TrimSuffix(text, "\r")
		indent := len(text) - len(strings.TrimLeft(text, " \t"))
		if quote == 0 && sc.indentTab.Line == 0 && indent < len(text) && text[indent] != '#' {
			if i := strings.IndexByte(text[:indent], '\t'); i >= 0 {
				sc.indentTab = Pos{Line: line, Column: i + 1}
			}
		}
		var prev byte // the last byte that is not a space, outside quotes
		listItem := indent < len(text) && text[indent] == '-'
		for i := indent; i < len(text); i++ {
			c := text[i]
			switch {
			case quote != 0:
				if c == quote {
					quote = 0
				}
				continue
			case c == '#' && (i == indent || text[i-1] == ' ' || text[i-1] == '\t'):
				i = len(text) // a comment runs to the end of the line
				continue
			case (c == '"' || c == '\'') && (prev == 0 || prev == ':' || prev == '[' || prev == '{' || prev == ',' || (prev == '-' && listItem && i > indent)):
				quote, lastQuote = c, Pos{Line: line, Column: i + 1}
			case c == '[' || c == '{':
				if depth++; depth > maxDepth && sc.deep.Line == 0 {
					sc.deep = Pos{Line: line, Column: i + 1}
				}
			case c == ']' || c == '}':
				depth = max(depth-1, 0)
			}
			if c != ' ' && c != '\t' {
				prev = c
			}
		}
		if quote != 0 && sc.openQuote.Line == 0 {
			sc.openQuote = lastQuote
		}
	}
	return sc
}

// tooDeep finds the first node nested past maxDepth: block nesting, or flow
// nesting the parser accepted.
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
