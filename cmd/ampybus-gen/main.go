// Command ampybus-gen turns contract.yaml into typed Go publishers and
// consumers, one package per domain, and checks that committed code is current.
//
//	ampybus-gen generate -contract contract.yaml -proto_path proto -out generated
//	ampybus-gen check    -contract contract.yaml -proto_path proto -out generated
//	ampybus-gen schema   # prints the contract's JSON Schema
//
// The payloads come from the .proto files under each -proto_path, compiled
// in process, or from a -descriptor_set_in written by buf or protoc. In a
// service repository (go get -tool github.com/ampyfin/ampy-bus/cmd/ampybus-gen):
//
//	//go:generate go tool ampybus-gen generate -contract contract.yaml -proto_path proto -out internal/bus
package main

//go:generate go run . generate -contract ../../contract.yaml -proto_path ../../proto -out ../../generated -observability ../../templates/observability -security ../../templates/security -python ../../python/generated

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/goemit"
	"github.com/ampyfin/ampy-bus/gen/obsemit"
	"github.com/ampyfin/ampy-bus/gen/output"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/gen/pyemit"
	"github.com/ampyfin/ampy-bus/gen/secemit"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: ampybus-gen <command> [flags]

commands:
  generate   write the Go packages for a contract
  check      exit 1 with a diff when the generated code is stale
  python     write only the Python package (-out DIR; -check to diff instead)
  breaking   compare with a previous contract (--against REF) and exit 1 on a breaking change
  docs       write the contract's Markdown catalog (docs/contract; -check diffs it)
  schema     print the contract's JSON Schema
  version    print the generator's version
  help       print this help

flags of generate and check:
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		printFlags(stderr)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		printFlags(stdout)
		return 0
	case "version", "--version":
		fmt.Fprintf(stdout, "ampybus-gen %s (runtime %s)\n", moduleVersion(), ampybus.Version)
		return 0
	case "schema":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "ampybus-gen schema: unexpected argument %q; schema takes none\n", args[1])
			return 2
		}
		stdout.Write(contract.JSONSchema)
		return 0
	case "breaking":
		return breakingCmd(args[1:], stdout, stderr)
	case "docs":
		return docsCmd(args[1:], stdout, stderr)
	case "generate", "check", "python":
	default:
		fmt.Fprintf(stderr, "ampybus-gen: unknown command %q; want generate, check, python, breaking, docs, schema, version or help\n", cmd)
		return 2
	}
	fs, o := flags(cmd, io.Discard)
	checkOnly := false
	if cmd == "python" {
		fs.BoolVar(&checkOnly, "check", false, "exit 1 with a diff when -out is stale, instead of writing it")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		fmt.Fprintf(stderr, "ampybus-gen %s: %v\n", cmd, err)
		fs.SetOutput(stderr)
		fs.Usage()
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ampybus-gen %s: unexpected argument %q: flags take the form -name value (the contract is -contract %s)\n", cmd, fs.Arg(0), fs.Arg(0))
		return 2
	}
	rerun := "ampybus-gen generate"
	if cmd == "python" {
		rerun = "ampybus-gen python"
		// The Python package alone, into -out.
		o.pythonOnly, o.python = true, o.out
		cmd = map[bool]string{false: "generate", true: "check"}[checkOnly]
	}
	outs, err := generate(o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, contract.ErrInvalid) {
			fmt.Fprintln(stderr, "ampybus-gen: the contract is invalid; nothing was written")
		}
		return 1
	}
	code := 0
	for _, out := range outs {
		if cmd == "generate" {
			r, err := output.Write(out.dir, out.files)
			if err != nil {
				fmt.Fprintf(stderr, "ampybus-gen: write %s: %v\n", out.dir, err)
				return 1
			}
			for _, f := range r.Written {
				fmt.Fprintf(stdout, "wrote   %s\n", filepath.Join(out.dir, f))
			}
			for _, f := range r.Removed {
				fmt.Fprintf(stdout, "removed %s\n", filepath.Join(out.dir, f))
			}
			fmt.Fprintf(stdout, "ampybus-gen: %s from %s: %d written, %d removed, %d unchanged\n", out.dir, o.contract, len(r.Written), len(r.Removed), r.Unchanged)
			continue
		}
		diff, err := output.Check(out.dir, out.files)
		if err != nil {
			fmt.Fprintf(stderr, "ampybus-gen: check %s: %v\n", out.dir, err)
			return 1
		}
		if diff != "" {
			fmt.Fprint(stdout, diff)
			fmt.Fprintf(stderr, "ampybus-gen: %s is stale for %s; run: %s with the same flags\n", out.dir, o.contract, rerun)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "ampybus-gen: %s is up to date with %s (%d files)\n", out.dir, o.contract, len(out.files))
	}
	return code
}

type options struct {
	contract, out, importPath string
	// observability is where the dashboards and alert rules go; empty
	// leaves them out.
	observability string
	// security is where the broker permissions go; empty leaves them out.
	security string
	// python is where the Python package goes; empty leaves it out.
	python string
	// pythonOnly writes the Python package and nothing else (ampybus-gen python).
	pythonOnly bool
	schemas    protoset.Options
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// flags declares the flags of generate and check; help prints the same set.
func flags(cmd string, w io.Writer) (*flag.FlagSet, *options) {
	fs := flag.NewFlagSet("ampybus-gen "+cmd, flag.ContinueOnError)
	fs.SetOutput(w)
	var o options
	fs.StringVar(&o.contract, "contract", "contract.yaml", "the contract file")
	fs.StringVar(&o.out, "out", "generated", "the output directory; one package per domain goes below it")
	fs.StringVar(&o.importPath, "import-path", "", "the Go import path of -out (default: from the nearest go.mod)")
	fs.StringVar(&o.security, "security", "", "also write each service's least-privilege NATS users and Kafka ACLs here, per env (e.g. templates/security)")
	fs.StringVar(&o.python, "python", "", "also write the Python package here: ampybus_contract (per domain: topics, keys, schemas) and the ampybus runtime (e.g. python/generated; not inside -out)")
	fs.StringVar(&o.observability, "observability", "", "also write the Grafana dashboard, Prometheus alert rules and their promtool test here (e.g. templates/observability)")
	fs.Var((*listFlag)(&o.schemas.ProtoPaths), "proto_path", "an import root of the payload .proto files, compiled in process (repeatable; default: proto/ beside the contract, when it exists)")
	fs.Var((*listFlag)(&o.schemas.ProtoPaths), "I", "same as -proto_path")
	fs.Var((*listFlag)(&o.schemas.DescriptorSets), "descriptor_set_in", "a FileDescriptorSet holding the payload schemas, from buf build -o or protoc --include_imports (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: ampybus-gen %s [-contract FILE] (-proto_path DIR | -descriptor_set_in FILE)... [-out DIR] [-import-path PATH] [-observability DIR] [-security DIR] [-python DIR]\n\nflags:\n", cmd)
		fs.PrintDefaults()
	}
	return fs, &o
}

func printFlags(w io.Writer) {
	fs, _ := flags("generate", w)
	fs.PrintDefaults()
}

// moduleVersion is the version of the ampy-bus module this binary was built
// from: a tag with go install or go tool, "(devel)" in a checkout.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// rendered is one output's files and the directory they belong in.
type rendered struct {
	dir   string
	files map[string][]byte
}

// generate loads the contract and its schemas and runs the emitters: the Go
// packages below -out and, with -observability, the dashboards and alerts.
func generate(o *options) ([]rendered, error) {
	if len(o.schemas.ProtoPaths)+len(o.schemas.DescriptorSets) == 0 {
		// The convention: the protos in proto/ beside the contract.
		if dir := filepath.Join(filepath.Dir(o.contract), "proto"); isDir(dir) {
			o.schemas.ProtoPaths = []string{dir}
		}
	}
	schemas, err := protoset.Load(context.Background(), o.schemas)
	if err != nil {
		return nil, fmt.Errorf("ampybus-gen: %w", err)
	}
	c, err := contract.Load(o.contract, schemas)
	if err != nil {
		return nil, err
	}
	source := filepath.Base(o.contract)
	if o.pythonOnly {
		files, err := pyemit.Emitter{Source: source}.Emit(c)
		if err != nil {
			return nil, fmt.Errorf("ampybus-gen: python output: %w", err)
		}
		return []rendered{{dir: o.python, files: files}}, nil
	}
	importPath := o.importPath
	if importPath == "" {
		if importPath, err = goemit.ImportPathOf(o.out); err != nil {
			return nil, fmt.Errorf("ampybus-gen: %w", err)
		}
	}
	outputs := []struct {
		em  output.Emitter
		dir string
	}{{goemit.Emitter{Options: goemit.Options{ImportPath: importPath, Source: source}}, o.out}}
	if o.observability != "" {
		if filepath.Clean(o.observability) == filepath.Clean(o.out) {
			return nil, fmt.Errorf("ampybus-gen: -observability %s is -out too: give the dashboards their own directory", o.observability)
		}
		outputs = append(outputs, struct {
			em  output.Emitter
			dir string
		}{obsemit.Emitter{Source: source}, o.observability})
	}
	if o.security != "" {
		outputs = append(outputs, struct {
			em  output.Emitter
			dir string
		}{secemit.Emitter{Source: source}, o.security})
	}
	if o.python != "" {
		if pathWithin(o.python, o.out) || pathWithin(o.out, o.python) {
			return nil, fmt.Errorf("ampybus-gen: -python %s and -out %s overlap: each output removes the other's files as stale; give the Python package its own directory", o.python, o.out)
		}
		outputs = append(outputs, struct {
			em  output.Emitter
			dir string
		}{pyemit.Emitter{Source: source}, o.python})
	}
	var out []rendered
	for _, x := range outputs {
		files, err := x.em.Emit(c)
		if err != nil {
			return nil, fmt.Errorf("ampybus-gen: %s output: %w", x.em.Name(), err)
		}
		out = append(out, rendered{dir: x.dir, files: files})
	}
	return out, nil
}

// pathWithin reports whether path a is b or below it.
func pathWithin(a, b string) bool {
	rel, err := filepath.Rel(filepath.Clean(b), filepath.Clean(a))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func isDir(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.IsDir()
}
