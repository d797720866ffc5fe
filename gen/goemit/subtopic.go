package goemit

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/dave/jennifer/jen"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/naming"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// A subtopic's Go type: its fields, constructors, String, parser and the
// patterns that subscribe to it.

// names are the identifiers generated for one subtopic.
type names struct {
	V, Spec, Subtopic, New, Must, Parse, Pattern, All                                               string
	Publisher, NewPublisher, Message, Handler, Subscribe, Keys, Route, OrderTime, ExpiresAt, Replay string
	SchemaFQDN, SchemaVersion, SchemaHash, Payload                                                  string
}

func subtopicNames(s *contract.Subtopic) names {
	v := naming.Exported(s.Name)
	n := names{
		V: v, Spec: v + "Spec", Subtopic: v + "Subtopic", New: "New" + v + "Subtopic", Must: "Must" + v + "Subtopic",
		Parse: "Parse" + v + "Subtopic", Pattern: v + "Pattern", All: "All" + v,
		Publisher: v + "Publisher", NewPublisher: "New" + v + "Publisher", Message: v + "Message",
		Handler: v + "Handler", Subscribe: "Subscribe" + v, Replay: "Replay" + v + "Window", Keys: naming.Unexported(s.Name) + "Keys", Route: naming.Unexported(s.Name) + "Route",
		OrderTime: naming.Unexported(s.Name) + "OrderTime", ExpiresAt: naming.Unexported(s.Name) + "ExpiresAt",
		SchemaFQDN: v + "SchemaFQDN", SchemaVersion: v + "SchemaVersion", SchemaHash: v + "SchemaHash",
	}
	if v == "" {
		n.Keys, n.Route, n.OrderTime, n.ExpiresAt, n.Replay = "keys", "route", "orderTime", "expiresAt", "Replay"
	}
	if s.Payload != nil {
		n.Payload = string(s.Payload.Name())
	}
	return n
}

func (e *emitter) subtopic(s *contract.Subtopic) {
	n := subtopicNames(s)
	f := e.f
	params := s.Pattern.Params()
	where := fmt.Sprintf("%s.{env}.%s.%s.%s", e.c.Namespace, e.d.Name, e.d.Version, s.Pattern.Text)

	// Schema constants and the subtopic spec.
	f.Line()
	if s.Raw() {
		f.Commentf("%s carries raw bytes: each message keeps the payload and headers it had", n.Spec)
		f.Comment("on its original topic.")
		f.Var().Id(n.Spec).Op("=").Op("&").Qual(runtimePkg, "SubtopicSpec").Add(fields(
			"Domain", jen.Id("Domain"), "Name", jen.Lit(s.Name), "Pattern", jen.Lit(s.Pattern.Text)))
	} else {
		f.Commentf("Schema of the %s payload carried on %s.", n.Payload, where)
		f.Const().Defs(
			jen.Id(n.SchemaFQDN).Op("=").Lit(string(s.Payload.FullName())),
			jen.Id(n.SchemaVersion).Op("=").Lit(s.SchemaVersion),
			jen.Comment("The hash covers the compiled descriptor of the payload and every type it uses."),
			jen.Id(n.SchemaHash).Op("=").Lit(schema.Hash(s.Payload)),
		)
		f.Line()
		f.Commentf("%s is the %s subtopic: %s carrying %s.", n.Spec, cmp.Or(s.Name, e.d.Name), where, n.Payload)
		if s.Description != "" {
			f.Comment(s.Description)
		}
		kv := []any{"Domain", jen.Id("Domain"), "Name", jen.Lit(s.Name), "Pattern", jen.Lit(s.Pattern.Text),
			"Schema", jen.Qual(runtimePkg, "Schema").Add(fields(
				"FQDN", jen.Id(n.SchemaFQDN), "Version", jen.Id(n.SchemaVersion), "Hash", jen.Id(n.SchemaHash)))}
		if s.PartitionKey != nil {
			kv = append(kv, "PartitionKey", jen.Lit(s.PartitionKey.Text))
		}
		if s.DedupeKey != nil {
			kv = append(kv, "DedupeKey", jen.Lit(s.DedupeKey.Text))
		}
		if len(s.Bind) > 0 {
			params := slices.Sorted(maps.Keys(s.Bind))
			kv = append(kv, "Bind", jen.Map(jen.String()).Index().String().Values(jen.DictFunc(func(d jen.Dict) {
				for _, p := range params {
					d[jen.Lit(p)] = jen.Index().String().ValuesFunc(func(g *jen.Group) {
						for _, fp := range s.Bind[p] {
							g.Lit(fp.Text)
						}
					})
				}
			})))
		}
		f.Var().Id(n.Spec).Op("=").Op("&").Qual(runtimePkg, "SubtopicSpec").Add(fields(kv...))
	}

	e.subtopicType(s, n, params)
	e.patterns(s, n, params)
	if s.Raw() {
		return
	}
	gt := e.goType(s.Payload)
	if gt == nil {
		return
	}
	e.f.ImportAlias(gt.ImportPath, gt.PkgName)
	payload := jen.Op("*").Qual(gt.ImportPath, gt.Name)
	e.keyFunc(s, n, payload)
	e.orderTimeFunc(s, n, payload)
	e.expiresAtFunc(s, n, payload)
	e.route(s, n, payload)
	e.publisher(s, n, where, payload)
	e.consumer(s, n, where, payload)
	e.replayServer(s, n, payload)
	e.stateOfTheWorld(s, n, where, payload)
}

func (e *emitter) goType(md protoreflect.MessageDescriptor) *goType {
	gt, err := goTypeOf(md)
	if err != nil && e.err == nil {
		e.err = err
	}
	return gt
}

// subtopicText builds the Go expression of a subtopic's topic form from its fields.
func subtopicText(s *contract.Subtopic, recv string) jen.Code {
	var parts []jen.Code
	lit := ""
	for i, t := range s.Pattern.Tokens {
		if i > 0 {
			lit += "."
		}
		if t.Literal != "" {
			lit += t.Literal
			continue
		}
		if lit != "" {
			parts = append(parts, jen.Lit(lit))
			lit = ""
		}
		parts = append(parts, jen.Id(recv).Dot(naming.Unexported(t.Param)))
	}
	if lit != "" {
		parts = append(parts, jen.Lit(lit))
	}
	expr := jen.Add(parts[0])
	for _, p := range parts[1:] {
		expr = expr.Op("+").Add(p)
	}
	return expr
}

func (e *emitter) subtopicType(s *contract.Subtopic, n names, params []string) {
	f := e.f
	f.Line()
	f.Commentf("%s is a validated %s subtopic. Build it with %s; the zero value", n.Subtopic, s.Pattern.Text, n.New)
	f.Comment("is not a valid subtopic and publishing it fails.")
	f.Type().Id(n.Subtopic).StructFunc(func(g *jen.Group) {
		for _, p := range params {
			g.Id(naming.Unexported(p)).String()
		}
	})

	args := func(g *jen.Group) {
		for _, p := range params {
			g.Id(naming.Unexported(p)).String()
		}
	}
	f.Line()
	if len(params) == 0 {
		f.Commentf("%s returns the %s subtopic; it has no parameters.", n.New, s.Pattern.Text)
		f.Func().Id(n.New).Params().Id(n.Subtopic).Block(jen.Return(jen.Id(n.Subtopic).Values()))
	} else {
		f.Commentf("%s checks that each parameter is a valid topic token: non-empty,", n.New)
		f.Comment("with no '.', '*', '>' or whitespace.")
	}
	if len(params) > 0 {
		f.Func().Id(n.New).ParamsFunc(args).Params(jen.Id(n.Subtopic), jen.Error()).BlockFunc(func(g *jen.Group) {
			for _, p := range params {
				g.If(jen.Op("!").Qual(runtimePkg, "ValidToken").Call(jen.Id(naming.Unexported(p)))).Block(
					jen.Return(jen.Id(n.Subtopic).Values(), jen.Op("&").Qual(runtimePkg, "TokenError").Values(jen.Dict{
						jen.Id("Param"): jen.Lit(p), jen.Id("Value"): jen.Id(naming.Unexported(p)),
					})),
				)
			}
			g.Return(jen.Id(n.Subtopic).ValuesFunc(func(g *jen.Group) {
				for _, p := range params {
					g.Id(naming.Unexported(p))
				}
			}), jen.Nil())
		})
	}

	if len(params) > 0 {
		f.Line()
		f.Commentf("%s is %s for values known to be valid; it panics otherwise.", n.Must, n.New)
		f.Func().Id(n.Must).ParamsFunc(args).Id(n.Subtopic).Block(
			jen.List(jen.Id("s"), jen.Err()).Op(":=").Id(n.New).CallFunc(func(g *jen.Group) {
				for _, p := range params {
					g.Id(naming.Unexported(p))
				}
			}),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Panic(jen.Err())),
			jen.Return(jen.Id("s")),
		)
	}

	f.Line()
	f.Commentf("%s reads a subtopic in its topic form, as %s.", n.Parse, s.Pattern.Text)
	f.Func().Id(n.Parse).Params(jen.Id("subtopic").String()).Params(jen.Id(n.Subtopic), jen.Error()).BlockFunc(func(g *jen.Group) {
		cond := jen.Op("!").Qual(runtimePkg, "SplitSubtopic").Call(jen.Id("subtopic"), jen.Id("tokens").Index(jen.Op(":")))
		for i, t := range s.Pattern.Tokens {
			if t.Literal != "" {
				cond = cond.Op("||").Id("tokens").Index(jen.Lit(i)).Op("!=").Lit(t.Literal)
			}
		}
		g.Var().Id("tokens").Index(jen.Lit(len(s.Pattern.Tokens))).String()
		g.If(cond).Block(jen.Return(jen.Id(n.Subtopic).Values(), jen.Qual("fmt", "Errorf").Call(
			jen.Lit("%w: subtopic %q does not match "+s.Pattern.Text), jen.Qual(runtimePkg, "ErrContract"), jen.Id("subtopic"))))
		if len(params) == 0 {
			g.Return(jen.Id(n.New).Call(), jen.Nil())
			return
		}
		g.Return(jen.Id(n.New).CallFunc(func(g *jen.Group) {
			for i, t := range s.Pattern.Tokens {
				if t.Param != "" {
					g.Id("tokens").Index(jen.Lit(i))
				}
			}
		}))
	})

	for _, p := range params {
		f.Line()
		f.Commentf("%s is the {%s} parameter.", naming.Exported(p), p)
		f.Func().Params(jen.Id("s").Id(n.Subtopic)).Id(naming.Exported(p)).Params().String().Block(jen.Return(jen.Id("s").Dot(naming.Unexported(p))))
	}
	f.Line()
	f.Commentf("String is the subtopic as it appears in the topic, as %s.", s.Pattern.Text)
	f.Func().Params(jen.Id("s").Id(n.Subtopic)).Id("String").Params().String().Block(jen.Return(subtopicText(s, "s")))
	f.Line()
	f.Commentf("Topic is the full topic in env: %s.{env}.%s.%s.%s.", e.c.Namespace, e.d.Name, e.d.Version, s.Pattern.Text)
	f.Func().Params(jen.Id("s").Id(n.Subtopic)).Id("Topic").Params(jen.Id("env").String()).String().Block(
		jen.Return(jen.Id("Domain").Dot("Prefix").Call(jen.Id("env")).Op("+").Lit(".").Op("+").Id("s").Dot("String").Call()))
	f.Line()
	f.Comment("Pattern matches exactly this subtopic, for a subscription.")
	f.Func().Params(jen.Id("s").Id(n.Subtopic)).Id("Pattern").Params().Id(n.Pattern).Block(
		jen.Return(jen.Id(n.Pattern).Values(jen.Id("s").Dot("String").Call())))
}

func (e *emitter) patterns(s *contract.Subtopic, n names, params []string) {
	f := e.f
	f.Line()
	f.Commentf("%s selects %s subtopics for a subscription. Build it with %s,", n.Pattern, s.Pattern.Text, n.All)
	f.Comment("a narrowing constructor or a subtopic's Pattern method.")
	f.Type().Id(n.Pattern).Struct(jen.Id("p").String())
	f.Line()
	f.Comment("String is the pattern relative to the domain, with * for any one token.")
	f.Func().Params(jen.Id("p").Id(n.Pattern)).Id("String").Params().String().Block(jen.Return(jen.Id("p").Dot("p")))

	wild := func(k int) string { // the pattern text with the first k params filled by %s
		var toks []string
		seen := 0
		for _, t := range s.Pattern.Tokens {
			switch {
			case t.Literal != "":
				toks = append(toks, t.Literal)
			case seen < k:
				toks = append(toks, "%s")
				seen++
			default:
				toks = append(toks, "*")
			}
		}
		return strings.Join(toks, ".")
	}
	f.Line()
	f.Commentf("%s matches every %s subtopic: %s.", n.All, s.Pattern.Text, wild(0))
	f.Func().Id(n.All).Params().Id(n.Pattern).Block(jen.Return(jen.Id(n.Pattern).Values(jen.Lit(wild(0)))))

	// Narrowed by leading parameters: ByMIC(mic) → XNAS.*
	for k := 1; k < len(params); k++ {
		lead := params[:k]
		fname := n.V + "By"
		for i, p := range lead {
			if i > 0 {
				fname += "And"
			}
			fname += naming.Exported(p)
		}
		f.Line()
		doc := wild(k)
		for _, p := range lead {
			doc = strings.Replace(doc, "%s", "{"+p+"}", 1)
		}
		f.Commentf("%s matches %s subtopics with the given leading parameters: %s.", fname, s.Pattern.Text, doc)
		f.Func().Id(fname).ParamsFunc(func(g *jen.Group) {
			for _, p := range lead {
				g.Id(naming.Unexported(p)).String()
			}
		}).Params(jen.Id(n.Pattern), jen.Error()).BlockFunc(func(g *jen.Group) {
			for _, p := range lead {
				g.If(jen.Op("!").Qual(runtimePkg, "ValidToken").Call(jen.Id(naming.Unexported(p)))).Block(
					jen.Return(jen.Id(n.Pattern).Values(), jen.Op("&").Qual(runtimePkg, "TokenError").Values(jen.Dict{
						jen.Id("Param"): jen.Lit(p), jen.Id("Value"): jen.Id(naming.Unexported(p)),
					})))
			}
			g.Return(jen.Id(n.Pattern).Values(jen.Qual("fmt", "Sprintf").CallFunc(func(g *jen.Group) {
				g.Lit(wild(k))
				for _, p := range lead {
					g.Id(naming.Unexported(p))
				}
			})), jen.Nil())
		})
	}
}
