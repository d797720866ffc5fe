package pyemit

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/gen/contract"
)

// Key functions in Python: the bind checks, then each key template as an
// expression over the payload's fields, failing where the Go side fails.

// keys renders {lower}keys(subtopic, payload): the bind checks, then the
// partition and dedupe keys, failing as the Go side fails.
func (e Emitter) keys(b *bytes.Buffer, s *contract.Subtopic) {
	fmt.Fprintf(b, "\n\ndef %skeys(s: %sSubtopic, m: Any) -> Keys:\n", lower(s), class(s))
	fmt.Fprintf(b, "    \"\"\"The keys the contract derives from a payload on subtopic s; ContractError\n    when a field they need is unset or a bound field disagrees with s.\"\"\"\n")
	binds := slices.Sorted(func(yield func(string) bool) {
		for k := range s.Bind {
			if !yield(k) {
				return
			}
		}
	})
	for _, param := range binds {
		for _, fp := range s.Bind[param] {
			if fp.Each() {
				fmt.Fprintf(b, "    _route.check_bind_each(%s, s.%s, m, %s)\n", pyStr(param), ident(param), pyPath(fp))
				continue
			}
			fmt.Fprintf(b, "    _route.check_bind(%s, s.%s, %s, %s)\n", pyStr(param), ident(param), fieldExpr("m", fp), pyStr(fp.Text))
		}
	}
	checked, gathered := map[string]bool{}, map[string]string{}
	partition := e.template(b, s.PartitionKey, "partition_key", checked, gathered)
	dedupe := `""`
	if s.DedupeKey != nil {
		dedupe = e.template(b, s.DedupeKey, "dedupe_key", checked, gathered)
	}
	fmt.Fprintf(b, "    return Keys(\n        partition=%s,\n        dedupe=%s,\n    )\n", partition, dedupe)
}

// template emits the checks a key's fields need (each field once across a
// subtopic's keys, as Go does) and returns the Python expression that
// concatenates the key.
func (e Emitter) template(b *bytes.Buffer, t *contract.Template, what string, checked map[string]bool, gathered map[string]string) string {
	if t == nil {
		return `""`
	}
	var parts []string
	check := func(field, cond, why string) {
		if checked[field] {
			return
		}
		checked[field] = true
		fmt.Fprintf(b, "    if %s:\n        raise ContractError(%s)\n", cond, pyStr(fmt.Sprintf("%s %s needs payload field %s, which is %s", what, t.Text, field, why)))
	}
	for _, p := range t.Parts {
		switch {
		case p.Literal != "":
			parts = append(parts, pyStr(p.Literal))
		case p.Param != "":
			parts = append(parts, "s."+ident(p.Param))
		case p.Field.Each() || (p.Optional && contract.IsTimestamp(p.Field.Fields[len(p.Field.Fields)-1])):
			key := p.Field.Text
			if p.Optional {
				key += "?"
			}
			v, ok := gathered[key]
			if !ok {
				v = "_key_" + strings.ReplaceAll(p.Field.Text, ".", "_")
				if p.Optional {
					v += "_opt"
				}
				gathered[key] = v
				optional := ""
				if p.Optional {
					optional = ", optional=True"
				}
				fmt.Fprintf(b, "    %s = _route.key_field(m, %s, %s, %s%s)\n", v, pyPath(p.Field), pyStr(what), pyStr(t.Text), optional)
			}
			parts = append(parts, v)
		default:
			leaf := p.Field.Fields[len(p.Field.Fields)-1]
			v := fieldExpr("m", p.Field)
			parent := fieldExpr("m", contract.FieldPath{Fields: p.Field.Fields[:len(p.Field.Fields)-1]})
			switch leaf.Kind() {
			case protoreflect.StringKind:
				if !p.Optional {
					check(p.Field.Text, v+` == ""`, "empty")
				}
				parts = append(parts, v)
			case protoreflect.MessageKind: // a Timestamp
				check(p.Field.Text, fmt.Sprintf("not %s.HasField(%s)", parent, pyStr(string(leaf.Name()))), "unset")
				parts = append(parts, fmt.Sprintf("_route.timestamp_text(%s)", v))
			case protoreflect.EnumKind:
				parts = append(parts, fmt.Sprintf("_route.enum_text(%s, %s)", parent, pyStr(string(leaf.Name()))))
			case protoreflect.BoolKind:
				parts = append(parts, fmt.Sprintf("_route.bool_text(%s)", v))
			default:
				parts = append(parts, fmt.Sprintf("str(%s)", v))
			}
		}
	}
	return strings.Join(parts, " + ")
}

// fieldExpr reads a field path: m.security.symbol (getattr for names that
// are Python keywords).
func fieldExpr(recv string, fp contract.FieldPath) string {
	expr := recv
	for _, fd := range fp.Fields {
		name := string(fd.Name())
		if pyKeywords[name] {
			expr = fmt.Sprintf("getattr(%s, %s)", expr, pyStr(name))
		} else {
			expr += "." + name
		}
	}
	return expr
}

// pyPath is a field path as a tuple of names: ("bars", "security", "symbol").
func pyPath(fp contract.FieldPath) string {
	names := make([]string, len(fp.Fields))
	for i, fd := range fp.Fields {
		names[i] = pyStr(string(fd.Name()))
	}
	if len(names) == 1 {
		return "(" + names[0] + ",)"
	}
	return "(" + strings.Join(names, ", ") + ")"
}

func subtopicExpr(p contract.Pattern) string {
	var parts []string
	var lit []string
	flush := func() {
		if len(lit) > 0 {
			parts = append(parts, pyStr(strings.Join(lit, "")))
			lit = nil
		}
	}
	for i, t := range p.Tokens {
		if i > 0 {
			lit = append(lit, ".")
		}
		if t.Param == "" {
			lit = append(lit, t.Literal)
			continue
		}
		flush()
		parts = append(parts, "self."+ident(t.Param))
	}
	flush()
	return strings.Join(parts, " + ")
}
