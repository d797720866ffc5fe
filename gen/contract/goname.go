package contract

import (
	"fmt"
	"go/token"
	"strings"
)

// Contract names become Go identifiers in generated code: a domain is a
// package, a subtopic parameter is a function parameter and an accessor
// method. The loader refuses names that would not compile, would shadow
// what Go predeclares, or would collide with each other or with the
// identifiers generated beside them.

// predeclared are Go's universe-scope identifiers.
var predeclared = map[string]bool{
	"any": true, "bool": true, "byte": true, "comparable": true, "complex64": true, "complex128": true,
	"error": true, "float32": true, "float64": true, "int": true, "int8": true, "int16": true, "int32": true,
	"int64": true, "rune": true, "string": true, "uint": true, "uint8": true, "uint16": true, "uint32": true,
	"uint64": true, "uintptr": true, "true": true, "false": true, "iota": true, "nil": true, "append": true,
	"cap": true, "clear": true, "close": true, "complex": true, "copy": true, "delete": true, "imag": true,
	"len": true, "make": true, "max": true, "min": true, "new": true, "panic": true, "print": true,
	"println": true, "real": true, "recover": true,
}

// generatedImports are the packages generated code imports by their own
// names; a domain package of the same name would have to be renamed at
// every import.
var generatedImports = map[string]bool{
	"ampybus": true, "context": true, "fmt": true, "strings": true, "time": true, "proto": true, "generated": true,
}

// accessorMethods are the methods a generated subtopic type has besides
// one accessor per parameter: a parameter of the same name would clash.
var accessorMethods = map[string]bool{"string": true, "topic": true, "pattern": true}

// goNameProblem says why name cannot be a Go identifier of the given kind
// ("package", "parameter"), or "" when it can.
func goNameProblem(name, kind string) string {
	switch {
	case token.IsKeyword(name):
		return fmt.Sprintf("%q is a Go keyword and cannot name a %s", name, kind)
	case predeclared[name]:
		return fmt.Sprintf("%q is predeclared in Go (a built-in type or function); as a %s it would shadow it", name, kind)
	case kind == "package" && generatedImports[name]:
		return fmt.Sprintf("%q is the name of a package the generated code imports", name)
	case kind == "parameter" && accessorMethods[name]:
		return fmt.Sprintf("parameter {%s} would clash with the generated subtopic type's %s method", name, strings.ToUpper(name[:1])+name[1:])
	}
	return ""
}

// goFold is the form two names share when they become the same Go
// identifier: lower_snake_case without its underscores.
func goFold(name string) string { return strings.ReplaceAll(name, "_", "") }
