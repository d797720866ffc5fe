// Package goemit turns a validated contract into Go: one package per domain
// with typed subtopics, patterns, publishers and consumers over the ampybus
// runtime. Output is deterministic and gofmt'd.
package goemit

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/dave/jennifer/jen"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
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
	// utf8Names are the UTF-8 check functions emitted, by message type
	// (utf8.go).
	utf8Names map[protoreflect.FullName]string
}

func domainFile(c *contract.Contract, d *contract.Domain, o Options) (*jen.File, error) {
	pkg := d.Package
	e := &emitter{c: c, d: d, o: o, f: newFile(pkg, o), self: o.ImportPath + "/" + pkg,
		utf8Names: map[protoreflect.FullName]string{}}
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
