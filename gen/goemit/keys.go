package goemit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dave/jennifer/jen"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/naming"
)

// keyFunc emits the function deriving partition and dedupe keys, with the
// contract's bind checks first.
func (e *emitter) keyFunc(s *contract.Subtopic, n names, payload jen.Code) {
	f := e.f
	f.Line()
	f.Commentf("%s derives the keys of a %s message as the contract says:", n.Keys, n.Payload)
	f.Commentf("partition_key %s", s.PartitionKey.Text)
	if s.DedupeKey != nil {
		f.Commentf("dedupe_key %s", s.DedupeKey.Text)
	}
	f.Func().Id(n.Keys).Params(jen.Id("s").Id(n.Subtopic), jen.Id("m").Add(payload)).Params(jen.Qual(runtimePkg, "Keys"), jen.Error()).BlockFunc(func(g *jen.Group) {
		for _, p := range slices.Sorted(func(yield func(string) bool) {
			for k := range s.Bind {
				if !yield(k) {
					return
				}
			}
		}) {
			want := jen.Id("s").Dot(naming.Unexported(p))
			for _, fp := range s.Bind[p] {
				e.each(g, jen.Id("m"), s.Payload, fp.Fields, true, func(g *jen.Group, v *jen.Statement, where string, idx []jen.Code) {
					args := append([]jen.Code{jen.Qual(runtimePkg, "ErrContract")}, idx...)
					args = append(args, jen.Id("got"), want.Clone())
					g.If(jen.Id("got").Op(":=").Add(v), jen.Id("got").Op("!=").Add(want.Clone())).Block(
						jen.Return(jen.Qual(runtimePkg, "Keys").Values(), jen.Qual("fmt", "Errorf").Call(append([]jen.Code{
							jen.Lit(fmt.Sprintf("%%w: payload %s %%q does not match subtopic {%s} %%q", where, p))}, args...)...)))
				})
			}
		}
		k := &keyParts{e: e, s: s, g: g, done: map[string]jen.Code{}}
		kv := []any{"Partition", k.template(s.PartitionKey, "partition_key")}
		if s.DedupeKey != nil {
			kv = append(kv, "Dedupe", k.template(s.DedupeKey, "dedupe_key"))
		}
		lit := jen.Qual(runtimePkg, "Keys").Add(fields(kv...))
		if len(kv) == 2 {
			lit = jen.Qual(runtimePkg, "Keys").Values(jen.Id("Partition").Op(":").Add(kv[1].(jen.Code)))
		}
		g.Return(lit, jen.Nil())
	})
}

// keyParts emits the parts of one subtopic's keys into a key function.
type keyParts struct {
	e *emitter
	s *contract.Subtopic
	g *jen.Group
	// done maps a field path already checked (and, for a path through
	// repeated fields, gathered into a variable) to its key text, so the
	// partition and dedupe keys share the work. An optional use ("x?") is
	// cached apart from a required one, which must still check the field.
	done map[string]jen.Code
}

// doneKey names a part in keyParts.done.
func doneKey(p contract.Part) string {
	if p.Optional {
		return p.Field.Text + "?"
	}
	return p.Field.Text
}

// template emits checks that each field part has a value and returns the
// expression that concatenates the key.
func (k *keyParts) template(t *contract.Template, what string) jen.Code {
	var parts []jen.Code
	for _, p := range t.Parts {
		switch {
		case p.Literal != "":
			parts = append(parts, jen.Lit(p.Literal))
		case p.Param != "":
			parts = append(parts, jen.Id("s").Dot(naming.Unexported(p.Param)))
		case p.Field.Each():
			parts = append(parts, k.gathered(t, what, p))
		case p.Optional && contract.IsTimestamp(p.Field.Fields[len(p.Field.Fields)-1]):
			parts = append(parts, k.optionalTime(p))
		default:
			parts = append(parts, k.single(t, what, p))
		}
	}
	expr := jen.Add(parts[0])
	for _, p := range parts[1:] {
		expr = expr.Op("+").Add(p)
	}
	return expr
}

// single emits the check of a field read once and returns its key text.
func (k *keyParts) single(t *contract.Template, what string, p contract.Part) jen.Code {
	v := k.e.fieldExpr("m", k.s.Payload, p.Field)
	text := keyText(p.Field.Fields[len(p.Field.Fields)-1], v)
	if _, ok := k.done[doneKey(p)]; !ok {
		k.done[doneKey(p)] = text
		if check := unsetCheck(p, v); check != nil {
			k.g.If(check).Block(jen.Return(jen.Qual(runtimePkg, "Keys").Values(), jen.Qual("fmt", "Errorf").Call(
				jen.Lit(fmt.Sprintf("%%w: %s %s needs payload field %s, which is %s", what, t.Text, p.Field.Text, unsetWord(p))),
				jen.Qual(runtimePkg, "ErrContract"))))
		}
	}
	return text
}

// optionalTime emits the key text of an optional Timestamp: empty when unset.
func (k *keyParts) optionalTime(p contract.Part) jen.Code {
	if v, ok := k.done[doneKey(p)]; ok {
		return v
	}
	name := localName(p)
	k.done[doneKey(p)] = jen.Id(name)
	k.g.Var().Id(name).String()
	k.g.If(jen.Id("ts").Op(":=").Add(k.e.fieldExpr("m", k.s.Payload, p.Field)), jen.Id("ts").Op("!=").Nil()).Block(
		jen.Id(name).Op("=").Add(keyText(p.Field.Fields[len(p.Field.Fields)-1], jen.Id("ts"))))
	return jen.Id(name)
}

// gathered emits the walk that reads a field through repeated fields into
// one variable: every element must give the same text, and at least one
// must have the field, for the key to be the key of the whole message.
func (k *keyParts) gathered(t *contract.Template, what string, p contract.Part) jen.Code {
	if v, ok := k.done[doneKey(p)]; ok {
		return v
	}
	name := localName(p)
	k.done[doneKey(p)] = jen.Id(name)
	seen := strings.TrimSuffix(name, "Text") + "Seen"
	k.g.Var().Defs(jen.Id(name).String(), jen.Id(seen).Bool())
	fail := func(format string, args ...jen.Code) jen.Code {
		return jen.Return(jen.Qual(runtimePkg, "Keys").Values(), jen.Qual("fmt", "Errorf").Call(
			append([]jen.Code{jen.Lit("%w: " + what + " " + t.Text + " " + format), jen.Qual(runtimePkg, "ErrContract")}, args...)...))
	}
	leaf := p.Field.Fields[len(p.Field.Fields)-1]
	k.e.each(k.g, jen.Id("m"), k.s.Payload, p.Field.Fields, true, func(g *jen.Group, v *jen.Statement, where string, idx []jen.Code) {
		body := func(g *jen.Group, v *jen.Statement) {
			g.Id("text").Op(":=").Add(keyText(leaf, v))
			g.If(jen.Id(seen).Op("&&").Id("text").Op("!=").Id(name)).Block(
				fail(fmt.Sprintf("needs one %s for the whole message, but %s is %%q and an earlier one %%q", p.Field.Text, where), append(idx, jen.Id("text"), jen.Id(name))...))
			g.List(jen.Id(name), jen.Id(seen)).Op("=").List(jen.Id("text"), jen.True())
		}
		if p.Optional && contract.IsTimestamp(leaf) {
			// An element without the time says nothing about the key.
			g.If(jen.Id("ts").Op(":=").Add(v), jen.Id("ts").Op("!=").Nil()).BlockFunc(func(g *jen.Group) { body(g, jen.Id("ts")) })
			return
		}
		if check := unsetCheck(p, v); check != nil {
			g.If(check).Block(fail(fmt.Sprintf("needs payload field %s, which is %s", where, unsetWord(p)), idx...))
		}
		body(g, v)
	})
	if !p.Optional {
		k.g.If(jen.Op("!").Id(seen)).Block(fail(fmt.Sprintf("needs payload field %s, which no element has", p.Field.Text)))
	}
	return jen.Id(name)
}

// localName is the variable a field's key text is read into:
// lines.period_end → linesPeriodEndText (optional: linesPeriodEndOptText).
// The suffix keeps it clear of the file's imports (time, fmt, …) and of
// the function's own names.
func localName(p contract.Part) string {
	var b strings.Builder
	for i, part := range strings.Split(p.Field.Text, ".") {
		if i == 0 {
			b.WriteString(strings.TrimSuffix(naming.Unexported(part), "_"))
		} else {
			b.WriteString(naming.Exported(part))
		}
	}
	if p.Optional {
		b.WriteString("Opt")
	}
	return b.String() + "Text"
}

// unsetCheck is the condition under which a key field has no value, nil
// when every value counts (numbers, enums, bools, optional strings).
func unsetCheck(p contract.Part, v *jen.Statement) jen.Code {
	switch leaf := p.Field.Fields[len(p.Field.Fields)-1]; {
	case leaf.Kind() == protoreflect.StringKind && !p.Optional:
		return v.Clone().Op("==").Lit("")
	case leaf.Kind() == protoreflect.MessageKind && !p.Optional: // a Timestamp
		return v.Clone().Op("==").Nil()
	}
	return nil
}

func unsetWord(p contract.Part) string {
	if p.Field.Fields[len(p.Field.Fields)-1].Kind() == protoreflect.StringKind {
		return "empty"
	}
	return "unset"
}

// keyText is the key text of a field value.
func keyText(leaf protoreflect.FieldDescriptor, v *jen.Statement) jen.Code {
	switch leaf.Kind() {
	case protoreflect.StringKind:
		return v.Clone()
	case protoreflect.MessageKind: // a Timestamp
		return v.Clone().Dot("AsTime").Call().Dot("Format").Call(jen.Qual("time", "RFC3339Nano"))
	case protoreflect.EnumKind:
		return v.Clone().Dot("String").Call()
	case protoreflect.BoolKind:
		return jen.Qual("strconv", "FormatBool").Call(v.Clone())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return jen.Qual("strconv", "FormatUint").Call(jen.Uint64().Call(v.Clone()), jen.Lit(10))
	default:
		return jen.Qual("strconv", "FormatInt").Call(jen.Int64().Call(v.Clone()), jen.Lit(10))
	}
}

// each emits a visit of every value a field path reads: a loop per repeated
// field, a nil check per oneof member on the way. at runs once, inside them,
// with the value's expression, the path as a format with %d per index, and
// the index variables (declared only when indexed, for messages that name
// the element).
func (e *emitter) each(g *jen.Group, recv *jen.Statement, md protoreflect.MessageDescriptor, path []protoreflect.FieldDescriptor, indexed bool, at func(g *jen.Group, v *jen.Statement, where string, idx []jen.Code)) {
	var walk func(g *jen.Group, recv *jen.Statement, md protoreflect.MessageDescriptor, i int, where string, idx []jen.Code)
	walk = func(g *jen.Group, recv *jen.Statement, md protoreflect.MessageDescriptor, i int, where string, idx []jen.Code) {
		if i == len(path) {
			at(g, recv, where, idx)
			return
		}
		fd := path[i]
		gt := e.goType(md)
		if gt == nil {
			return
		}
		getter, err := gt.getter(fd)
		if err != nil {
			if e.err == nil {
				e.err = err
			}
			return
		}
		if where != "" {
			where += "."
		}
		where += string(fd.Name())
		get := recv.Clone().Dot(getter).Call()
		switch {
		case fd.IsList():
			iv, ev := "i", "x"
			if d := len(idx); d > 0 {
				iv, ev = fmt.Sprintf("i%d", d+1), fmt.Sprintf("x%d", d+1)
			}
			if !indexed {
				iv = "_"
			}
			g.For(jen.List(jen.Id(iv), jen.Id(ev)).Op(":=").Range().Add(get)).BlockFunc(func(g *jen.Group) {
				walk(g, jen.Id(ev), fd.Message(), i+1, where+"[%d]", append(slices.Clip(idx), jen.Id(iv)))
			})
		case contract.Conditional(fd, i == len(path)-1):
			// The oneof member, named for itself with a suffix that keeps
			// it clear of imports and the function's names: splitMsg.
			v := strings.TrimSuffix(naming.Unexported(string(fd.Name())), "_") + "Msg"
			g.If(jen.Id(v).Op(":=").Add(get), jen.Id(v).Op("!=").Nil()).BlockFunc(func(g *jen.Group) {
				walk(g, jen.Id(v), fd.Message(), i+1, where, idx)
			})
		default:
			walk(g, get, fd.Message(), i+1, where, idx)
		}
	}
	walk(g, recv, md, 0, "", nil)
}

// fieldExpr is the getter chain for a field path: m.GetSecurity().GetMic().
func (e *emitter) fieldExpr(recv string, md protoreflect.MessageDescriptor, fp contract.FieldPath) *jen.Statement {
	expr := jen.Id(recv)
	cur := md
	for _, fd := range fp.Fields {
		gt := e.goType(cur)
		if gt == nil {
			return expr
		}
		getter, err := gt.getter(fd)
		if err != nil {
			if e.err == nil {
				e.err = err
			}
			return expr
		}
		expr = expr.Dot(getter).Call()
		cur = fd.Message()
	}
	return expr
}
