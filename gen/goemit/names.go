package goemit

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// initialisms are written in capitals in Go identifiers (ModelID, ByMIC).
var initialisms = map[string]bool{
	"id": true, "mic": true, "url": true, "api": true, "http": true, "json": true, "uuid": true,
	"fx": true, "dlq": true, "qos": true, "isin": true, "figi": true, "utc": true, "ip": true, "oms": true,
}

// exported turns lower_snake_case into an exported Go identifier.
func exported(snake string) string {
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

// unexported turns lower_snake_case into an unexported Go identifier,
// avoiding Go keywords.
func unexported(snake string) string {
	e := exported(snake)
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

// goType is where the Go type of a payload message lives.
type goType struct {
	ImportPath string
	PkgName    string
	Name       string
	// fields maps proto field names to Go struct field names.
	fields map[protoreflect.Name]string
}

// getter is the name of the generated getter for a field.
func (g *goType) getter(fd protoreflect.FieldDescriptor) (string, error) {
	name, ok := g.fields[fd.Name()]
	if !ok {
		return "", fmt.Errorf("%s.%s: field %s has no Go struct field (oneof members are not supported in keys)", g.ImportPath, g.Name, fd.FullName())
	}
	return "Get" + name, nil
}
