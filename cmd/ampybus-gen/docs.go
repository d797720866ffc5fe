package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/ampyfin/ampy-bus/gen/docemit"
	"github.com/ampyfin/ampy-bus/gen/output"
)

// docsCmd writes (or, with -check, diffs) the contract's Markdown catalog.
func docsCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ampybus-gen docs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	contractPath := fs.String("contract", "contract.yaml", "the contract")
	var protoPaths []string
	fs.Var((*listFlag)(&protoPaths), "proto_path", "an import root of its .proto files (repeatable; default: proto/ beside the contract)")
	out := fs.String("out", "docs/contract", "where the catalog goes")
	check := fs.Bool("check", false, "exit 1 with a diff when the catalog is stale, writing nothing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(protoPaths) == 0 {
		if dir := filepath.Join(filepath.Dir(*contractPath), "proto"); isDir(dir) {
			protoPaths = []string{dir}
		}
	}
	c, err := loadContract(context.Background(), *contractPath, protoPaths)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	files, err := docemit.Emitter{Source: filepath.Base(*contractPath)}.Emit(c)
	if err != nil {
		fmt.Fprintf(stderr, "ampybus-gen docs: %v\n", err)
		return 1
	}
	if *check {
		diff, err := output.Check(*out, files)
		if err != nil {
			fmt.Fprintf(stderr, "ampybus-gen docs: %v\n", err)
			return 1
		}
		if diff != "" {
			fmt.Fprint(stdout, diff)
			fmt.Fprintf(stderr, "ampybus-gen docs: %s is stale for %s; run: ampybus-gen docs -contract %s -out %s\n", *out, *contractPath, *contractPath, *out)
			return 1
		}
		fmt.Fprintf(stdout, "ampybus-gen docs: %s is up to date with %s (%d files)\n", *out, *contractPath, len(files))
		return 0
	}
	r, err := output.Write(*out, files)
	if err != nil {
		fmt.Fprintf(stderr, "ampybus-gen docs: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "ampybus-gen docs: %s from %s: %d written, %d removed, %d unchanged\n", *out, *contractPath, len(r.Written), len(r.Removed), r.Unchanged)
	return 0
}
