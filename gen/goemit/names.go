package goemit

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
)

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
