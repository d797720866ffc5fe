// Command ampybus-gen turns contract.yaml into typed Go publishers and
// consumers, one package per domain, and checks that committed code is current.
//
//	ampybus-gen generate -contract contract.yaml -out generated
//	ampybus-gen check    -contract contract.yaml -out generated
//	ampybus-gen schema   # prints the contract's JSON Schema
//
// In a service repository:
//
//	//go:generate go run github.com/ampyfin/ampy-bus/cmd/ampybus-gen generate -contract contract.yaml -out internal/bus
package main

//go:generate go run . generate -contract ../../contract.yaml -out ../../generated

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/goemit"
	_ "github.com/ampyfin/ampy-bus/proto/ampy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: ampybus-gen <command> [flags]

commands:
  generate   write the Go packages for a contract
  check      exit 1 with a diff when the generated code is stale
  schema     print the contract's JSON Schema

flags (generate, check):
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		flags(io.Discard).PrintDefaults()
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "schema":
		stdout.Write(contract.JSONSchema)
		return 0
	case "generate", "check":
	default:
		fmt.Fprintf(stderr, "ampybus-gen: unknown command %q; want generate, check or schema\n", cmd)
		return 2
	}
	fs := flags(stderr)
	contractPath := fs.String("contract", "contract.yaml", "the contract file")
	out := fs.String("out", "generated", "the output directory; one package per domain goes below it")
	importPath := fs.String("import-path", "", "the Go import path of -out (default: from the nearest go.mod)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	files, err := generate(*contractPath, *out, *importPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, contract.ErrInvalid) {
			fmt.Fprintln(stderr, "ampybus-gen: the contract is invalid; nothing was written")
		}
		return 1
	}
	if cmd == "generate" {
		if err := goemit.Write(*out, files); err != nil {
			fmt.Fprintf(stderr, "ampybus-gen: write %s: %v\n", *out, err)
			return 1
		}
		return 0
	}
	diff, err := goemit.Check(*out, files)
	if err != nil {
		fmt.Fprintf(stderr, "ampybus-gen: check %s: %v\n", *out, err)
		return 1
	}
	if diff != "" {
		fmt.Fprint(stdout, diff)
		fmt.Fprintf(stderr, "ampybus-gen: %s is stale for %s; run: ampybus-gen generate -contract %s -out %s\n", *out, *contractPath, *contractPath, *out)
		return 1
	}
	fmt.Fprintf(stdout, "ampybus-gen: %s is up to date with %s (%d files)\n", *out, *contractPath, len(files))
	return 0
}

func flags(w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ampybus-gen", flag.ContinueOnError)
	fs.SetOutput(w)
	return fs
}

func generate(contractPath, out, importPath string) (map[string][]byte, error) {
	c, err := contract.Load(contractPath, protoregistry.GlobalFiles)
	if err != nil {
		return nil, err
	}
	if importPath == "" {
		if importPath, err = goemit.ImportPathOf(out); err != nil {
			return nil, fmt.Errorf("ampybus-gen: %w", err)
		}
	}
	return goemit.Generate(c, goemit.Options{ImportPath: importPath, Source: filepath.Base(contractPath)})
}
