package goemit

import (
	"fmt"
	"reflect"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
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

// lookupGoType finds the compiled Go type of md through the type registry; the
// struct tags protoc-gen-go writes give each field's Go name exactly.
func lookupGoType(md protoreflect.MessageDescriptor) (*goType, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		return nil, fmt.Errorf("%s: no Go type linked into the generator: %w", md.FullName(), err)
	}
	t := reflect.TypeOf(mt.Zero().Interface())
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%s: unexpected Go type %s", md.FullName(), t)
	}
	st := t.Elem()
	gt := &goType{ImportPath: st.PkgPath(), Name: st.Name(), fields: map[protoreflect.Name]string{}}
	gt.PkgName = goPackageName(md.ParentFile())
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		for _, part := range strings.Split(f.Tag.Get("protobuf"), ",") {
			if name, ok := strings.CutPrefix(part, "name="); ok {
				gt.fields[protoreflect.Name(name)] = f.Name
			}
		}
	}
	return gt, nil
}

// goPackageName is the package name protoc-gen-go chose for a file: the part of
// go_package after ';', else the import path's last element.
func goPackageName(fd protoreflect.FileDescriptor) string {
	type goPackager interface{ GetGoPackage() string }
	if o, ok := fd.Options().(goPackager); ok {
		gp := o.GetGoPackage()
		if i := strings.LastIndexByte(gp, ';'); i >= 0 {
			return gp[i+1:]
		}
		return gp[strings.LastIndexByte(gp, '/')+1:]
	}
	return strings.ReplaceAll(string(fd.Package()), ".", "")
}

// getter is the name of the generated getter for a field.
func (g *goType) getter(fd protoreflect.FieldDescriptor) (string, error) {
	name, ok := g.fields[fd.Name()]
	if !ok {
		return "", fmt.Errorf("%s.%s: field %s has no Go struct field (oneof members are not supported in keys)", g.ImportPath, g.Name, fd.FullName())
	}
	return "Get" + name, nil
}
