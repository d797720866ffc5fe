// Package naming turns contract names into the identifiers every output
// uses, so the Go packages, documentation and helpers of one contract name
// a thing the same way (see docs/ARCHITECTURE.md, "Names").
package naming

import "strings"

// initialisms are written in capitals in Go identifiers (ModelID, ByMIC).
var initialisms = map[string]bool{
	"id": true, "mic": true, "url": true, "api": true, "http": true, "json": true, "uuid": true,
	"fx": true, "dlq": true, "qos": true, "isin": true, "figi": true, "utc": true, "ip": true, "oms": true,
}

// Exported turns a contract name (lower_snake_case) into an exported Go
// identifier: client_order_id → ClientOrderID.
func Exported(snake string) string {
	var b strings.Builder
	for _, part := range strings.Split(snake, "_") {
		if part == "" {
			continue
		}
		if initialisms[part] {
			b.WriteString(strings.ToUpper(part))
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// Unexported turns a contract name into an unexported Go identifier,
// avoiding Go keywords: model_id → modelID, type → type_.
func Unexported(snake string) string {
	e := Exported(snake)
	if e == "" {
		return e
	}
	// Lower the leading run of capitals (MIC → mic, ID → id, Symbol → symbol).
	n := 1
	for n < len(e) && e[n] >= 'A' && e[n] <= 'Z' && (n+1 == len(e) || e[n+1] >= 'A' && e[n+1] <= 'Z') {
		n++
	}
	s := strings.ToLower(e[:n]) + e[n:]
	if keywords[s] {
		s += "_"
	}
	return s
}

var keywords = map[string]bool{
	"break": true, "case": true, "chan": true, "const": true, "continue": true, "default": true,
	"defer": true, "else": true, "fallthrough": true, "for": true, "func": true, "go": true, "goto": true,
	"if": true, "import": true, "interface": true, "map": true, "package": true, "range": true,
	"return": true, "select": true, "struct": true, "switch": true, "type": true, "var": true,
}
