package goemit

import (
	"fmt"
	"strings"
	"unicode"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The Go names protoc-gen-go gives a message, its fields and its package,
// derived from the descriptor alone: the generator needs the payload's
// .proto (or a descriptor set), not its compiled Go code. The rules are
// protoc-gen-go's documented ones (see docs/ARCHITECTURE.md, "Names"):
//   - the package is go_package: "import/path;name", or the path whose last
//     element, made a Go identifier, is the name;
//   - a message is its CamelCase name, nested ones joined by "_" (Outer_Inner);
//   - a field is its CamelCase name; one that would clash with a method of
//     the message (Reset, String, ProtoMessage, Descriptor, …), with an
//     earlier field or its getter, or with an earlier oneof gets "_"
//     appended until it does not.

// goTypeOf names the Go type of md.
func goTypeOf(md protoreflect.MessageDescriptor) (*goType, error) {
	importPath, pkg, err := goPackage(md.ParentFile())
	if err != nil {
		return nil, err
	}
	name := camelCase(string(md.Name()))
	for p := md.Parent(); p != nil; p = p.Parent() {
		outer, ok := p.(protoreflect.MessageDescriptor)
		if !ok {
			break
		}
		name = camelCase(string(outer.Name())) + "_" + name
	}
	gt := &goType{ImportPath: importPath, PkgName: pkg, Name: name, fields: map[protoreflect.Name]string{}}
	taken := map[string]bool{}
	for _, m := range []string{"Reset", "String", "ProtoMessage", "Marshal", "Unmarshal", "ExtensionRangeArray", "ExtensionMap", "Descriptor"} {
		taken[m] = true
	}
	unique := func(n string) string {
		for taken[n] || taken["Get"+n] {
			n += "_"
		}
		taken[n], taken["Get"+n] = true, true
		return n
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		gt.fields[fd.Name()] = unique(camelCase(string(fd.Name())))
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && od.Fields().Get(0) == fd {
			// A oneof takes its name when its first field comes, as if it
			// had no getter (protoc-gen-go's historical rule).
			n := camelCase(string(od.Name()))
			for taken[n] {
				n += "_"
			}
			taken[n], taken["Get"+n] = true, false
		}
	}
	return gt, nil
}

// goPackage reads a file's Go import path and package name from go_package.
func goPackage(fd protoreflect.FileDescriptor) (importPath, name string, err error) {
	type goPackager interface{ GetGoPackage() string }
	var gp string
	if o, ok := fd.Options().(goPackager); ok {
		gp = o.GetGoPackage()
	}
	if gp == "" {
		return "", "", fmt.Errorf("%s has no go_package option: add option go_package = \"example.com/you/gen/%s;%s\" so generated code can import its Go types",
			fd.Path(), strings.ReplaceAll(string(fd.Package()), ".", "/"), strings.ReplaceAll(string(fd.Package()), ".", ""))
	}
	if path, pkg, ok := strings.Cut(gp, ";"); ok {
		return path, pkg, nil
	}
	return gp, goIdentifier(gp[strings.LastIndexByte(gp, '/')+1:]), nil
}

// goIdentifier makes s a valid Go identifier: other characters become "_",
// and a leading digit gets one before it.
func goIdentifier(s string) string {
	out := []rune(s)
	for i, r := range out {
		if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			out[i] = '_'
		}
	}
	if len(out) == 0 || unicode.IsDigit(out[0]) {
		out = append([]rune{'_'}, out...)
	}
	return string(out)
}

// camelCase is protoc-gen-go's CamelCase of a proto name: an underscore
// followed by a lower-case letter is dropped and the letter upper-cased; a
// leading underscore becomes X; every run of lower-case letters starts
// upper-cased; digits and other characters are kept.
func camelCase(s string) string {
	var b strings.Builder
	lower := func(c byte) bool { return c >= 'a' && c <= 'z' }
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' && i == 0:
			b.WriteByte('X')
		case c == '_' && i+1 < len(s) && lower(s[i+1]):
			// dropped: the next letter starts a word
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		default:
			if lower(c) {
				c -= 'a' - 'A'
			}
			b.WriteByte(c)
			for i+1 < len(s) && lower(s[i+1]) {
				i++
				b.WriteByte(s[i])
			}
		}
	}
	return b.String()
}
