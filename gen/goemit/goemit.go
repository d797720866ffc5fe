// Package goemit turns a validated contract into Go: one package per domain
// with typed subtopics, patterns, publishers and consumers over the ampybus
// runtime. Output is deterministic and gofmt'd.
package goemit

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/dave/jennifer/jen"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/naming"
	"github.com/ampyfin/ampy-bus/gen/output"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

const (
	runtimePkg = "github.com/ampyfin/ampy-bus/runtime/ampybus"
	// Marker starts every Go file the generator writes (the form Go tools
	// recognise as generated); output.Write replaces or deletes such files.
	Marker = "// " + output.Marker
	// FileSuffix ends the name of every generated file.
	FileSuffix = ".ampybus.go"
)

// Emitter is the Go output behind the output.Emitter interface.
type Emitter struct{ Options Options }

// Name implements output.Emitter.
func (Emitter) Name() string { return "go" }

// Emit implements output.Emitter.
func (e Emitter) Emit(c *contract.Contract) (map[string][]byte, error) { return Generate(c, e.Options) }

var _ output.Emitter = Emitter{}

// Options says where output goes.
type Options struct {
	// ImportPath is the Go import path of the output directory; domain
	// packages live below it.
	ImportPath string
	// Source names the contract file in generated comments (contract.yaml).
	Source string
}

// Generate renders the contract. The result maps slash-separated paths,
// relative to the output directory, to file contents.
func Generate(c *contract.Contract, o Options) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, d := range c.Domains {
		f, err := domainFile(c, d, o)
		if err != nil {
			return nil, fmt.Errorf("domain %s: %w", d.Name, err)
		}
		pkg := d.Package
		if err := render(out, path.Join(pkg, pkg+FileSuffix), f); err != nil {
			return nil, fmt.Errorf("domain %s: %w", d.Name, err)
		}
	}
	if err := render(out, path.Base(o.ImportPath)+FileSuffix, rootFile(c, o)); err != nil {
		return nil, err
	}
	return out, nil
}

func render(out map[string][]byte, name string, f *jen.File) error {
	var buf bytes.Buffer
	if err := f.Render(&buf); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	src, err := groupImports(buf.Bytes())
	if err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	out[name] = src
	return nil
}

func newFile(pkg string, o Options) *jen.File {
	f := jen.NewFile(pkg)
	f.HeaderComment(Marker)
	f.HeaderComment("source: " + o.Source)
	f.ImportName(runtimePkg, "ampybus")
	return f
}

// versionGuard ties generated code to a runtime that understands it.
func versionGuard(f *jen.File) {
	f.Comment("This is a compile-time assertion that this generated file and the ampybus")
	f.Comment("runtime it builds against are compatible. If it fails, upgrade the runtime")
	f.Comment("(go get github.com/ampyfin/ampy-bus) or regenerate with the matching ampybus-gen.")
	f.Const().Id("_").Op("=").Qual(runtimePkg, "IsAtLeastVersion0_1_0")
}

func rootFile(c *contract.Contract, o Options) *jen.File {
	name := path.Base(o.ImportPath)
	f := newFile(name, o)
	f.PackageComment(fmt.Sprintf("// Package %s lists every domain of the %s contract, for tools that work\n// across domains (stream setup, inspection). Services import the domain packages.", name, c.Namespace))
	versionGuard(f)
	f.Line()
	f.Comment("Namespace is the first token of every topic.")
	f.Const().Id("Namespace").Op("=").Lit(c.Namespace)
	f.Line()
	f.Comment("Envs are the environments topics may live in.")
	f.Var().Id("Envs").Op("=").Index().String().ValuesFunc(func(g *jen.Group) {
		for _, e := range c.Envs {
			g.Lit(e)
		}
	})
	f.Line()
	f.Comment("Domains lists every domain in contract order.")
	f.Var().Id("Domains").Op("=").Index().Op("*").Qual(runtimePkg, "DomainSpec").ValuesFunc(func(g *jen.Group) {
		for _, d := range c.Domains {
			g.Line().Qual(o.ImportPath+"/"+d.Package, "Domain")
		}
		g.Line()
	})
	f.Line()
	f.Comment("Catalog resolves any topic or subject of the contract to its domain and route,")
	f.Comment("and says what is wrong with one that does not fit.")
	f.Var().Id("Catalog").Op("=").Qual(runtimePkg, "NewCatalog").CallFunc(func(g *jen.Group) {
		g.Line().Id("Domains")
		for _, d := range c.Domains {
			if hasRoutes(d) {
				g.Line().Qual(o.ImportPath+"/"+d.Package, "Routes")
			}
		}
		g.Line()
	})
	return f
}

// emitter holds what one domain file needs.
type emitter struct {
	c    *contract.Contract
	d    *contract.Domain
	o    Options
	f    *jen.File
	err  error
	self string
}

func domainFile(c *contract.Contract, d *contract.Domain, o Options) (*jen.File, error) {
	pkg := d.Package
	e := &emitter{c: c, d: d, o: o, f: newFile(pkg, o), self: o.ImportPath + "/" + pkg}
	e.f.PackageComment(e.packageDoc(pkg))
	versionGuard(e.f)
	e.domainSpec()
	for _, s := range d.Subtopics {
		e.subtopic(s)
	}
	e.routes()
	return e.f, e.err
}

// routes lists the domain's routes with their types erased, for the root
// package's catalog; a raw domain has none.
func (e *emitter) routes() {
	if !hasRoutes(e.d) {
		return
	}
	e.f.Line()
	e.f.Comment("Routes are the domain's subtopics with their Go types erased, for tools that take")
	e.f.Comment("any topic of the contract (ampybusctl, fixture checks); services use the typed API.")
	e.f.Var().Id("Routes").Op("=").Index().Op("*").Qual(runtimePkg, "AnyRoute").ValuesFunc(func(g *jen.Group) {
		for _, s := range e.d.Subtopics {
			if !s.Raw() {
				g.Line().Qual(runtimePkg, "Erase").Call(jen.Id(subtopicNames(s).Route))
			}
		}
		g.Line()
	})
}

// hasRoutes reports whether a domain's package declares Routes: it does when
// a subtopic carries a typed payload (the generator fails on one it cannot
// resolve, so every such subtopic has a route).
func hasRoutes(d *contract.Domain) bool {
	for _, s := range d.Subtopics {
		if !s.Raw() {
			return true
		}
	}
	return false
}

func (e *emitter) packageDoc(pkg string) string {
	d := e.d
	var b strings.Builder
	fmt.Fprintf(&b, "// Package %s is the typed bus API of the %s domain", pkg, d.Name)
	if d.Description != "" {
		fmt.Fprintf(&b, ": %s", lowerFirst(strings.TrimSuffix(d.Description, ".")))
	}
	b.WriteString(".\n//\n// Topics:\n//")
	for _, s := range d.Subtopics {
		fmt.Fprintf(&b, "\n//   - %s.{env}.%s.%s.%s carries %s", e.c.Namespace, d.Name, d.Version, s.Pattern.Text, s.PayloadName)
		if s.PartitionKey != nil {
			fmt.Fprintf(&b, ", keyed by %s", s.PartitionKey.Text)
		}
	}
	fmt.Fprintf(&b, "\n//\n// QoS %s (p99 %s). Ordering: %s.", d.QoS.Name, d.QoS.LatencyP99, orderingDoc(d.Ordering))
	return b.String()
}

func orderingDoc(o contract.Ordering) string {
	switch o.Rule {
	case contract.OrderMonotonic:
		return "per partition key, monotonic in " + o.By
	case contract.OrderCausal:
		return "strict causal order per partition key"
	case contract.OrderLatestWins:
		if o.Expires != "" {
			return "the latest " + o.By + " per partition key wins until its " + o.Expires
		}
		return "the latest " + o.By + " per partition key wins"
	case contract.OrderAccumulate:
		return "may arrive out of order; every message accumulates"
	case contract.OrderSnapshot:
		if o.Restatements {
			return "snapshots per partition key, monotonic in " + o.By + "; a newer one restates the key"
		}
		return "snapshots per partition key, monotonic in " + o.By
	case contract.OrderCounterGauge:
		return "counter and gauge samples"
	}
	return string(o.Rule)
}

// lowerFirst lowers a description's first letter to continue a sentence,
// leaving acronyms (OHLCV) alone.
func lowerFirst(s string) string {
	if len(s) < 2 || (s[1] >= 'A' && s[1] <= 'Z') {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func (e *emitter) domainSpec() {
	d, f := e.d, e.f
	f.Line()
	f.Const().Defs(
		jen.Comment("DomainName is the domain's name in topics and in the contract."),
		jen.Id("DomainName").Op("=").Lit(d.Name),
		jen.Comment("Version is the domain's major version, the topic's version token."),
		jen.Id("Version").Op("=").Lit(d.Version),
	)
	f.Line()
	f.Commentf("Domain is the %s domain as %s states it; the runtime derives its", d.Name, e.o.Source)
	f.Comment("stream, limits and checks from it.")
	kv := []any{
		"Namespace", jen.Lit(e.c.Namespace),
		"Envs", jen.Index().String().ValuesFunc(func(g *jen.Group) {
			for _, env := range e.c.Envs {
				g.Lit(env)
			}
		}),
		"Name", jen.Id("DomainName"),
		"Version", jen.Id("Version"),
		"QoS", jen.Lit(d.QoS.Name),
		"LatencyP99", duration(d.QoS.LatencyP99),
		"PublishRetry", jen.Qual(runtimePkg, "PublishRetry").Add(fields(
			"Backoff", duration(d.QoS.PublishRetry.Backoff),
			"MaxBackoff", duration(d.QoS.PublishRetry.MaxBackoff),
			"GiveUpAfter", duration(d.QoS.PublishRetry.GiveUpAfter))),
	}
	if d.QoS.MaxLag > 0 {
		kv = append(kv,
			"Priority", jen.Qual(runtimePkg, priorityConst(d.QoS.Priority)),
			"MaxLag", jen.Lit(int(d.QoS.MaxLag)))
		if groups := e.c.ConsumerGroups(d); len(groups) > 0 {
			kv = append(kv, "ConsumerGroups", jen.Index().String().ValuesFunc(func(g *jen.Group) {
				for _, name := range groups {
					g.Lit(name)
				}
			}))
		}
	}
	kv = append(kv, "Ordering", jen.Qual(runtimePkg, orderingConst(d.Ordering.Rule)))
	if d.Ordering.By != "" {
		kv = append(kv, "OrderBy", jen.Lit(d.Ordering.By))
	}
	if d.Ordering.Sequence {
		kv = append(kv, "OrderBySequence", jen.True())
	}
	if d.Ordering.Expires != "" {
		kv = append(kv, "ExpiresBy", jen.Lit(d.Ordering.Expires))
	}
	if d.Ordering.Expired == contract.ExpiredFlag {
		kv = append(kv, "FlagExpired", jen.True())
	}
	if d.Ordering.Restatements {
		kv = append(kv, "Restatements", jen.True())
	}
	kv = append(kv, "Retention", duration(d.Retention))
	if len(d.RetentionByEnv) > 0 {
		kv = append(kv, "RetentionByEnv", jen.Map(jen.String()).Qual("time", "Duration").Values(jen.DictFunc(func(dict jen.Dict) {
			for env, r := range d.RetentionByEnv {
				dict[jen.Lit(env)] = duration(r)
			}
		})))
	}
	kv = append(kv,
		"MaxPayload", size(d.MaxPayload),
		"MaxInflated", size(d.MaxInflated),
		"CompressAbove", size(d.CompressAbove),
		"Partitions", jen.Lit(d.Partitions),
		"Replicas", jen.Lit(d.Replicas),
		"DedupeWindow", duration(d.DedupeWindow),
		"Retry", jen.Qual(runtimePkg, "RetryPolicy").Add(fields(
			"MaxAttempts", jen.Lit(d.Retry.MaxAttempts),
			"Backoff", duration(d.Retry.Backoff),
			"MaxBackoff", duration(d.Retry.MaxBackoff))),
		"Subtopics", jen.Index().String().ValuesFunc(func(g *jen.Group) {
			for _, st := range d.Subtopics {
				g.Lit(st.Pattern.Text)
			}
		}),
	)
	if dlq := e.c.Domain("dlq"); dlq != nil && d.Name != "dlq" {
		path := e.o.ImportPath + "/" + dlq.Package
		e.f.ImportName(path, dlq.Package)
		kv = append(kv, "DeadLetter", jen.Qual(path, "Domain"))
	}
	f.Var().Id("Domain").Op("=").Op("&").Qual(runtimePkg, "DomainSpec").Add(fields(kv...))
}

func priorityConst(p contract.Priority) string {
	return map[contract.Priority]string{
		contract.PriorityCritical: "PriorityCritical", contract.PriorityHigh: "PriorityHigh",
		contract.PriorityNormal: "PriorityNormal", contract.PriorityLow: "PriorityLow",
	}[p]
}

func orderingConst(r contract.OrderingRule) string {
	return map[contract.OrderingRule]string{
		contract.OrderMonotonic: "OrderMonotonic", contract.OrderCausal: "OrderCausal",
		contract.OrderLatestWins: "OrderLatestWins", contract.OrderAccumulate: "OrderAccumulate",
		contract.OrderSnapshot: "OrderSnapshot", contract.OrderCounterGauge: "OrderCounterGauge",
	}[r]
}

// fields renders a composite literal with one key: value per line, in the
// order given (jen.Dict would sort the keys).
func fields(kv ...any) *jen.Statement {
	return jen.ValuesFunc(func(g *jen.Group) {
		for i := 0; i+1 < len(kv); i += 2 {
			g.Line().Id(kv[i].(string)).Op(":").Add(kv[i+1].(jen.Code))
		}
		g.Line()
	})
}

// duration writes d as a readable constant expression: 7 * 24 * time.Hour.
func duration(d time.Duration) jen.Code {
	day := 24 * time.Hour
	for _, u := range []struct {
		unit time.Duration
		expr jen.Code
	}{
		{day, jen.Lit(24).Op("*").Qual("time", "Hour")},
		{time.Hour, jen.Qual("time", "Hour")},
		{time.Minute, jen.Qual("time", "Minute")},
		{time.Second, jen.Qual("time", "Second")},
		{time.Millisecond, jen.Qual("time", "Millisecond")},
	} {
		if d%u.unit == 0 {
			return jen.Lit(int(d / u.unit)).Op("*").Add(u.expr)
		}
	}
	return jen.Lit(int(d))
}

// size writes n as a shift when it is a whole KiB/MiB/GiB: 128 << 10.
func size(n int64) jen.Code {
	for _, s := range []int{30, 20, 10} {
		if n >= 1<<s && n%(1<<s) == 0 {
			return jen.Lit(int(n >> s)).Op("<<").Lit(s)
		}
	}
	return jen.Lit(int(n))
}

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

// replayControl finds the contract's control subtopic carrying
// ampy.control.v1.ReplayRequest, if any.
func (e *emitter) replayControl() (*contract.Domain, *contract.Subtopic) {
	for _, d := range e.c.Domains {
		for _, s := range d.Subtopics {
			if s.Payload != nil && s.Payload.FullName() == "ampy.control.v1.ReplayRequest" {
				return d, s
			}
		}
	}
	return nil, nil
}

// replayServer emits Serve<V>Replays: a control-topic subscriber that replays
// each matching ReplayRequest through the service's handler.
func (e *emitter) replayServer(s *contract.Subtopic, n names, payload jen.Code) {
	cd, cs := e.replayControl()
	if cd == nil || cd == e.d {
		return
	}
	ctl := e.o.ImportPath + "/" + cd.Package
	e.f.ImportName(ctl, cd.Package)
	cn := subtopicNames(cs)
	name := "Serve" + n.V + "Replays"
	f := e.f
	f.Line()
	f.Commentf("%s replays, through h, each ReplayRequest posted on %s.{env}.%s.%s.%s", name, e.c.Namespace, cd.Name, cd.Version, cs.Pattern.Text)
	f.Commentf("that concerns %s messages matching pattern, until ctx ends. Pass the live", n.Payload)
	f.Comment("subscription's options (its ampybus.Durable group and ampybus.Dedupe store) so a")
	f.Comment("replay applies only what is missing; each group serves each request once.")
	f.Func().Id(name).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern),
		jen.Id("h").Id(n.Handler), jen.Id("opts").Op("...").Qual(runtimePkg, "SubscribeOption"),
	).Params(jen.Op("*").Qual(runtimePkg, "Subscription"), jen.Error()).Block(
		jen.Return(jen.Qual(ctl, cn.Subscribe).Call(jen.Id("ctx"), jen.Id("b"), jen.Qual(ctl, cn.All).Call(),
			jen.Func().Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("m").Op("*").Qual(ctl, cn.Message)).Error().Block(
				jen.List(jen.Id("w"), jen.Id("ok")).Op(":=").Qual(runtimePkg, "ReplayFor").Call(jen.Id("b"), jen.Id(n.Spec), jen.Id("m").Dot("Payload")),
				jen.If(jen.Op("!").Id("ok")).Block(jen.Return(jen.Nil())),
				jen.List(jen.Id("_"), jen.Err()).Op(":=").Id(n.Replay).Call(jen.Id("ctx"), jen.Id("b"), jen.Id("pattern"), jen.Id("w"), jen.Id("h"), jen.Id("opts").Op("...")),
				jen.Return(jen.Err()),
			),
			jen.Qual(runtimePkg, "ReplayServerOptions").Call(jen.Id("opts").Op("...")).Op("..."))))
}

// stateOfTheWorld emits Snapshot<V> and SnapshotThenSubscribe<V> for the
// domains whose ordering rule makes "the latest value per key" meaningful.
func (e *emitter) stateOfTheWorld(s *contract.Subtopic, n names, where string, payload jen.Code) {
	if r := e.d.Ordering.Rule; r != contract.OrderLatestWins && r != contract.OrderSnapshot {
		return
	}
	f := e.f
	f.Line()
	f.Commentf("Snapshot%s returns the latest %s for one partition key on %s,", n.V, n.Payload, where)
	f.Commentf("the newest by %s, from what the stream holds now.", e.d.Ordering.By)
	f.Func().Id("Snapshot"+n.V).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern), jen.Id("key").String(),
	).Params(jen.Op("*").Id(n.Message), jen.Bool(), jen.Error()).Block(
		jen.Return(jen.Qual(runtimePkg, "Snapshot").Call(jen.Id("ctx"), jen.Id("b"), jen.Id(n.Route), jen.Id("pattern").Dot("String").Call(), jen.Id("key"))))
	f.Line()
	f.Commentf("SnapshotThenSubscribe%s calls h with the latest %s of every key (Snapshot", n.V, n.Payload)
	f.Comment("set), then with every message that follows, live: nothing is missed and nothing")
	f.Comment("repeated between the two.")
	f.Func().Id("SnapshotThenSubscribe"+n.V).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern),
		jen.Id("h").Id(n.Handler), jen.Id("opts").Op("...").Qual(runtimePkg, "SubscribeOption"),
	).Params(jen.Op("*").Qual(runtimePkg, "Subscription"), jen.Error()).Block(
		jen.Return(jen.Qual(runtimePkg, "SnapshotThenSubscribe").Call(jen.Id("ctx"), jen.Id("b"), jen.Id(n.Route), jen.Id("pattern").Dot("String").Call(),
			jen.Qual(runtimePkg, "Handler").Types(jen.Id(n.Subtopic), payload).Call(jen.Id("h")), jen.Id("opts").Op("..."))))
}

// route emits the value that ties the subtopic's types to the runtime.
func (e *emitter) route(s *contract.Subtopic, n names, payload jen.Code) {
	kv := []any{"Spec", jen.Id(n.Spec), "Parse", jen.Id(n.Parse), "Keys", jen.Id(n.Keys)}
	if len(s.OrderBy.Fields) > 0 {
		kv = append(kv, "OrderTime", jen.Id(n.OrderTime))
	}
	if len(s.ExpiresAt.Fields) > 0 {
		kv = append(kv, "ExpiresAt", jen.Id(n.ExpiresAt))
	}
	e.f.Line()
	e.f.Commentf("%s ties the %s types to the runtime for publishers and consumers.", n.Route, n.Payload)
	e.f.Var().Id(n.Route).Op("=").Op("&").Qual(runtimePkg, "Route").Types(jen.Id(n.Subtopic), payload).Add(fields(kv...))
}

// orderTimeFunc emits the function reading the payload time the domain's
// ordering rule compares; through repeated fields it takes the newest.
func (e *emitter) orderTimeFunc(s *contract.Subtopic, n names, payload jen.Code) {
	fp := s.OrderBy
	if len(fp.Fields) == 0 {
		return
	}
	e.f.Line()
	if contract.IsSequence(fp.Fields[len(fp.Fields)-1]) {
		e.f.Commentf("%s places the %s sequence the contract orders %s messages by on the", n.OrderTime, fp.Text, n.Payload)
		e.f.Comment("ordering axis (the highest, across repeated fields); zero when the payload has none.")
	} else {
		e.f.Commentf("%s is the %s the contract orders %s messages by (the newest, across", n.OrderTime, fp.Text, n.Payload)
		e.f.Comment("repeated fields); zero when the payload has none.")
	}
	e.f.Func().Id(n.OrderTime).Params(jen.Id("m").Add(payload)).Qual("time", "Time").BlockFunc(func(g *jen.Group) {
		g.Var().Id("newest").Qual("time", "Time")
		seq := contract.IsSequence(fp.Fields[len(fp.Fields)-1])
		e.each(g, jen.Id("m"), s.Payload, fp.Fields, false, func(g *jen.Group, v *jen.Statement, _ string, _ []jen.Code) {
			if seq {
				// A sequence number on the ordering axis; 0 is none.
				g.If(jen.Id("seq").Op(":=").Add(v), jen.Id("seq").Op("!=").Lit(0).Op("&&").Qual(runtimePkg, "SequenceTime").Call(jen.Int64().Call(jen.Id("seq"))).Dot("After").Call(jen.Id("newest"))).Block(
					jen.Id("newest").Op("=").Qual(runtimePkg, "SequenceTime").Call(jen.Int64().Call(jen.Id("seq"))))
				return
			}
			g.If(jen.Id("ts").Op(":=").Add(v), jen.Id("ts").Op("!=").Nil().Op("&&").Id("ts").Dot("AsTime").Call().Dot("After").Call(jen.Id("newest"))).Block(
				jen.Id("newest").Op("=").Id("ts").Dot("AsTime").Call())
		})
		g.Return(jen.Id("newest"))
	})
}

// expiresAtFunc emits the function reading the time after which a message
// is no longer current.
func (e *emitter) expiresAtFunc(s *contract.Subtopic, n names, payload jen.Code) {
	fp := s.ExpiresAt
	if len(fp.Fields) == 0 {
		return
	}
	e.f.Line()
	e.f.Commentf("%s is the %s after which a %s is no longer current; zero when it has", n.ExpiresAt, fp.Text, n.Payload)
	e.f.Comment("none, and then it does not expire.")
	e.f.Func().Id(n.ExpiresAt).Params(jen.Id("m").Add(payload)).Qual("time", "Time").Block(
		jen.If(jen.Id("ts").Op(":=").Add(e.fieldExpr("m", s.Payload, fp)), jen.Id("ts").Op("!=").Nil()).Block(
			jen.Return(jen.Id("ts").Dot("AsTime").Call())),
		jen.Return(jen.Qual("time", "Time").Values()))
}

func (e *emitter) publisher(s *contract.Subtopic, n names, where string, payload jen.Code) {
	f := e.f
	gen := jen.Qual(runtimePkg, "Publisher").Types(jen.Id(n.Subtopic), payload)
	f.Line()
	f.Commentf("%s publishes %s messages to %s.", n.Publisher, n.Payload, where)
	f.Comment("The envelope, topic and keys come from the contract; the caller supplies only the")
	f.Comment("subtopic and payload. It is safe for concurrent use.")
	f.Type().Id(n.Publisher).Struct(jen.Id("pub").Op("*").Add(gen))
	f.Line()
	f.Commentf("%s returns a publisher on b; b must carry a producer identity.", n.NewPublisher)
	f.Func().Id(n.NewPublisher).Params(jen.Id("b").Op("*").Qual(runtimePkg, "Bus")).Op("*").Id(n.Publisher).Block(
		jen.Return(jen.Op("&").Id(n.Publisher).Values(jen.Id("pub").Op(":").Qual(runtimePkg, "NewPublisher").Call(jen.Id("b"), jen.Id(n.Route)))))
	keyDoc := "partition_key " + s.PartitionKey.Text
	if s.DedupeKey != nil {
		keyDoc += " and dedupe_key " + s.DedupeKey.Text
	}
	params := []jen.Code{
		jen.Id("ctx").Qual("context", "Context"), jen.Id("subtopic").Id(n.Subtopic), jen.Id("msg").Add(payload),
		jen.Id("opts").Op("...").Qual(runtimePkg, "PublishOption"),
	}
	f.Line()
	f.Commentf("Publish sends msg with %s and waits until the broker", keyDoc)
	f.Comment("has stored it. A payload that breaks the contract fails with ampybus.ErrContract")
	f.Comment("and nothing is published.")
	f.Func().Params(jen.Id("p").Op("*").Id(n.Publisher)).Id("Publish").Params(params...).Params(jen.Qual(runtimePkg, "PublishResult"), jen.Error()).Block(
		jen.Return(jen.Id("p").Dot("pub").Dot("Publish").Call(jen.Id("ctx"), jen.Id("subtopic"), jen.Id("msg"), jen.Id("opts").Op("..."))))
	f.Line()
	f.Comment("PublishAsync sends msg without waiting for the broker's ack; the future completes")
	f.Comment("when it arrives, and Bus.Flush waits for all of them. It blocks only while the")
	f.Comment("async window is full, bounded by ctx.")
	f.Func().Params(jen.Id("p").Op("*").Id(n.Publisher)).Id("PublishAsync").Params(params...).Params(jen.Op("*").Qual(runtimePkg, "PublishFuture"), jen.Error()).Block(
		jen.Return(jen.Id("p").Dot("pub").Dot("PublishAsync").Call(jen.Id("ctx"), jen.Id("subtopic"), jen.Id("msg"), jen.Id("opts").Op("..."))))
	if q := e.d.QoS; q.MaxLag > 0 && q.Priority != contract.PriorityCritical {
		f.Line()
		f.Comment("BatchSize is how many items to put in the next message when batching: limit, or")
		f.Commentf("a quarter of it while a consumer group of %s is over %d messages behind.", e.d.Name, q.MaxLag)
		f.Func().Params(jen.Id("p").Op("*").Id(n.Publisher)).Id("BatchSize").Params(jen.Id("limit").Int()).Int().Block(
			jen.Return(jen.Id("p").Dot("pub").Dot("BatchSize").Call(jen.Id("limit"))))
	}
}

func (e *emitter) consumer(s *contract.Subtopic, n names, where string, payload jen.Code) {
	f := e.f
	f.Line()
	f.Commentf("%s is a delivered %s with its subtopic and headers.", n.Message, n.Payload)
	f.Type().Id(n.Message).Op("=").Qual(runtimePkg, "Message").Types(jen.Id(n.Subtopic), payload)
	f.Line()
	f.Commentf("%s handles %s messages. Return nil to acknowledge; an error redelivers", n.Handler, n.Payload)
	f.Comment("the message later, and an error wrapping ampybus.ErrPermanent dead-letters it.")
	f.Type().Id(n.Handler).Func().Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("m").Op("*").Id(n.Message)).Error()
	f.Line()
	f.Commentf("%s calls h for every %s message on %s", n.Subscribe, n.Payload, where)
	f.Comment("that matches pattern, until ctx ends or the subscription is stopped. Use")
	f.Comment("ampybus.Durable to share work in a group and resume after a restart.")
	f.Func().Id(n.Subscribe).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern),
		jen.Id("h").Id(n.Handler), jen.Id("opts").Op("...").Qual(runtimePkg, "SubscribeOption"),
	).Params(jen.Op("*").Qual(runtimePkg, "Subscription"), jen.Error()).Block(
		jen.Return(jen.Qual(runtimePkg, "Subscribe").Call(jen.Id("ctx"), jen.Id("b"), jen.Id(n.Route), jen.Id("pattern").Dot("String").Call(),
			jen.Qual(runtimePkg, "Handler").Types(jen.Id(n.Subtopic), payload).Call(jen.Id("h")), jen.Id("opts").Op("..."))))
	f.Line()
	f.Commentf("%s runs h over the %s messages on %s that match", n.Replay, n.Payload, where)
	f.Comment("pattern and fall in the window, then returns what it did. It reads through its")
	f.Comment("own consumer and never moves a live one; pass the live subscription's")
	f.Comment("ampybus.Durable group and ampybus.Dedupe store so effects already applied are")
	f.Comment("not applied twice. Messages carry the window's RequestID as ReplayRequestID.")
	f.Func().Id(n.Replay).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern),
		jen.Id("window").Qual(runtimePkg, "ReplayWindow"), jen.Id("h").Id(n.Handler), jen.Id("opts").Op("...").Qual(runtimePkg, "SubscribeOption"),
	).Params(jen.Qual(runtimePkg, "Stats"), jen.Error()).Block(
		jen.Return(jen.Qual(runtimePkg, "Replay").Call(jen.Id("ctx"), jen.Id("b"), jen.Id(n.Route), jen.Id("pattern").Dot("String").Call(), jen.Id("window"),
			jen.Qual(runtimePkg, "Handler").Types(jen.Id(n.Subtopic), payload).Call(jen.Id("h")), jen.Id("opts").Op("..."))))
}
