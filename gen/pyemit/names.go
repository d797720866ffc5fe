package pyemit

import (
	"strconv"
	"strings"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/naming"
)

// Python names for the contract's domains and subtopics, and the small
// writers of Python literals.

// moduleName is a domain's Python module: its Go package name, so every
// output names a domain alike, with a trailing _ for a Python keyword.
func moduleName(d *contract.Domain) string {
	if pyKeywords[d.Package] {
		return d.Package + "_"
	}
	return d.Package
}

var pyKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "as": true, "assert": true, "async": true,
	"await": true, "break": true, "class": true, "continue": true, "def": true, "del": true, "elif": true,
	"else": true, "except": true, "finally": true, "for": true, "from": true, "global": true, "if": true,
	"import": true, "in": true, "is": true, "lambda": true, "nonlocal": true, "not": true, "or": true,
	"pass": true, "raise": true, "return": true, "try": true, "while": true, "with": true, "yield": true,
}

// reserved are names a subtopic parameter may not take as is in a
// subtopic class: its self, its classmethod's cls, its methods.
var reserved = map[string]bool{"self": true, "cls": true, "parse": true, "topic": true}

// ident makes a contract name (lower_snake) a Python identifier that
// collides with no keyword and no name of the subtopic classes.
func ident(snake string) string {
	if pyKeywords[snake] || reserved[snake] {
		return snake + "_"
	}
	return snake
}

// upper is a subtopic's prefix for module constants: "" for a domain's
// only subtopic, REQUESTS_ for one named requests.
func upper(s *contract.Subtopic) string {
	if s.Name == "" {
		return ""
	}
	return strings.ToUpper(s.Name) + "_"
}

// class is a subtopic's prefix for class and function names.
func class(s *contract.Subtopic) string { return naming.Exported(s.Name) }

// lower is a subtopic's prefix for function names: "" or "requests_".
func lower(s *contract.Subtopic) string {
	if s.Name == "" {
		return ""
	}
	return s.Name + "_"
}

// aliasOK reports whether a subtopic's payload may also be named by its
// short name (BarBatch) in the module: not a name the module defines, and
// no other subtopic of the domain carrying another type of that name.
func aliasOK(d *contract.Domain, s *contract.Subtopic) bool {
	name := string(s.Payload.Name())
	if moduleNames[name] || pyKeywords[name] || strings.HasSuffix(name, "Subtopic") {
		return false
	}
	for _, o := range d.Subtopics {
		if o.Payload != nil && o.Payload.Name() == s.Payload.Name() && o.Payload.FullName() != s.Payload.FullName() {
			return false
		}
	}
	return true
}

// moduleNames are what a domain module defines or imports besides its
// subtopics' names.
var moduleNames = map[string]bool{"Any": true, "Keys": true, "ContractError": true, "NAMESPACE": true, "DOMAIN": true,
	"VERSION": true, "ENVS": true, "PARTITIONS": true, "MAX_PAYLOAD": true, "MAX_INFLATED": true, "COMPRESS_ABOVE": true,
	"ORDERING": true, "annotations": true}

// patternSuffix names all_…: all_ for a domain's only subtopic reads
// badly, so it is all_subtopics; all_requests for a named one.
func patternSuffix(s *contract.Subtopic) string {
	if s.Name == "" {
		return "subtopics"
	}
	return s.Name
}

// docText is contract text safe inside a """docstring""": backslashes
// doubled, and no run of three quotes.
func docText(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), `\`, `\\`)
	return strings.ReplaceAll(s, `"""`, `\"\"\"`)
}

func typedArgs(params []string) []string {
	out := make([]string, len(params))
	for i, p := range params {
		out[i] = ident(p) + ": str"
	}
	return out
}

func pyIdents(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = ident(n)
	}
	return out
}

func prefixed(sep string, items []string) string {
	if len(items) == 0 {
		return ""
	}
	return sep + strings.Join(items, sep)
}

func joinMap(items []string, f func(string) string) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = f(it)
	}
	return strings.Join(out, ", ")
}

// pyStr is s as a Python string literal (double-quoted; Go's escapes are
// Python's for the text a contract holds).
func pyStr(s string) string { return strconv.Quote(s) }

func pyTuple(items []string) string {
	if len(items) == 1 {
		return "(" + pyStr(items[0]) + ",)"
	}
	return "(" + joinMap(items, pyStr) + ")"
}
