package goemit

import (
	"strconv"

	"github.com/dave/jennifer/jen"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/gen/naming"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// A payload's UTF-8 check. Publishers encode a payload whose Go type has
// vtprotobuf's marshal methods with those, and they do not refuse a string
// proto requires be UTF-8 that is not, as proto.Marshal does. The runtime
// can find the strings on the encoded bytes; the functions emitted here
// read them through their getters instead, a fraction of the cost, one
// function per message type on the way to a string.

// utf8Check emits the payload md's check, and those of the types it
// reaches, unless the domain's file has them; it returns the payload's
// function, or "" when md has no such string or proto encodes it anyway
// (schema.Strings).
func (e *emitter) utf8Check(md protoreflect.MessageDescriptor) string {
	fields, ok := schema.Strings(md)
	if !ok || len(fields[md.FullName()]) == 0 {
		return ""
	}
	// Named first, in the order the payload reaches them, so a function can
	// call one emitted after it, itself included.
	type checked struct {
		md protoreflect.MessageDescriptor
		gt *goType
	}
	var order []checked
	var reach func(md protoreflect.MessageDescriptor)
	reach = func(md protoreflect.MessageDescriptor) {
		if _, ok := e.utf8Names[md.FullName()]; ok {
			return
		}
		gt := e.goType(md)
		if gt == nil {
			return
		}
		e.utf8Name(md.FullName(), gt)
		order = append(order, checked{md, gt})
		for _, fd := range fields[md.FullName()] {
			if fd.Kind() == protoreflect.MessageKind {
				reach(fd.Message())
			}
		}
	}
	reach(md)
	for _, c := range order {
		e.utf8Func(c.md, c.gt, fields[c.md.FullName()])
	}
	return e.utf8Names[md.FullName()]
}

// utf8Name names the check of the type full, whose Go type is gt:
// checkUTF8 and the Go type, with its package where two types of the file
// share a name.
func (e *emitter) utf8Name(full protoreflect.FullName, gt *goType) {
	taken := func(name string) bool {
		for _, n := range e.utf8Names {
			if n == name {
				return true
			}
		}
		return false
	}
	name := "checkUTF8" + gt.Name
	if taken(name) {
		name = "checkUTF8" + naming.Exported(gt.PkgName) + gt.Name
	}
	for i := 2; taken(name); i++ {
		name = "checkUTF8" + naming.Exported(gt.PkgName) + gt.Name + strconv.Itoa(i)
	}
	e.utf8Names[full] = name
}

// utf8Func emits md's check over fields, its strings and the message
// fields that lead to one.
func (e *emitter) utf8Func(md protoreflect.MessageDescriptor, gt *goType, fields []protoreflect.FieldDescriptor) {
	name := e.utf8Names[md.FullName()]
	e.f.ImportAlias(gt.ImportPath, gt.PkgName)
	e.f.Line()
	e.f.Commentf("%s refuses a %s holding a string that is not UTF-8, as proto.Marshal", name, gt.Name)
	e.f.Comment("would; the generated marshal methods publishers encode with do not check.")
	e.f.Func().Id(name).Params(jen.Id("m").Op("*").Qual(gt.ImportPath, gt.Name)).Error().BlockFunc(func(g *jen.Group) {
		for _, fd := range fields {
			getter, err := gt.getter(fd)
			if err != nil {
				if e.err == nil {
					e.err = err
				}
				return
			}
			get := jen.Id("m").Dot(getter).Call()
			if fd.Kind() == protoreflect.MessageKind {
				check := func(v jen.Code) jen.Code {
					return jen.If(jen.Err().Op(":=").Id(e.utf8Names[fd.Message().FullName()]).Call(v), jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Err()))
				}
				if fd.IsList() {
					g.For(jen.List(jen.Id("_"), jen.Id("x")).Op(":=").Range().Add(get)).Block(check(jen.Id("x")))
				} else {
					g.Add(check(get))
				}
				continue
			}
			refuse := func(v jen.Code) jen.Code {
				return jen.If(jen.Op("!").Qual("unicode/utf8", "ValidString").Call(v)).Block(
					jen.Return(jen.Qual(runtimePkg, "InvalidUTF8").Call(jen.Lit(string(fd.FullName())))))
			}
			if fd.IsList() {
				g.For(jen.List(jen.Id("_"), jen.Id("s")).Op(":=").Range().Add(get)).Block(refuse(jen.Id("s")))
			} else {
				g.Add(refuse(get))
			}
		}
		g.Return(jen.Nil())
	})
}
