package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ampyfin/ampy-bus/gen/breaking"
	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/protoset"
)

// breakingCmd compares the contract with a previous one and exits 1 when a
// change would break what runs on it.
func breakingCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ampybus-gen breaking", flag.ContinueOnError)
	fs.SetOutput(stderr)
	contractPath := fs.String("contract", "contract.yaml", "the current contract")
	var protoPaths []string
	fs.Var((*listFlag)(&protoPaths), "proto_path", "an import root of its .proto files (repeatable; default: proto/ beside the contract)")
	against := fs.String("against", "", "the previous contract: a git ref (main, HEAD~1), a contract file, or a directory holding it")
	format := fs.String("format", "text", "text, json or github-actions")
	except := map[string]string{}
	fs.Func("except", "accept a rule for this run: RULE_ID=reason (repeatable; the contract's breaking: except: is the lasting way)", func(v string) error {
		rule, reason, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(reason) == "" {
			return fmt.Errorf("want RULE_ID=reason, got %q", v)
		}
		except[rule] = reason
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *against == "" {
		fmt.Fprintln(stderr, "ampybus-gen breaking: --against REF is required (a git ref, a contract file or a directory)")
		return 2
	}
	if len(protoPaths) == 0 {
		if dir := filepath.Join(filepath.Dir(*contractPath), "proto"); isDir(dir) {
			protoPaths = []string{dir}
		}
	}
	ctx := context.Background()
	cur, err := loadContract(ctx, *contractPath, protoPaths)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	prevPath, prevProtos, cleanup, err := previous(ctx, *against, *contractPath, protoPaths)
	if err != nil {
		fmt.Fprintf(stderr, "ampybus-gen breaking: --against %s: %v\n", *against, err)
		return 1
	}
	defer cleanup()
	// The previous contract may predate rules the current one meets.
	prev, err := loadContract(ctx, prevPath, prevProtos, contract.WithoutPolicy())
	if err != nil {
		fmt.Fprintf(stderr, "ampybus-gen breaking: the previous contract (%s): %v\n", *against, err)
		return 1
	}
	findings := breaking.Check(prev, cur, except)
	broken := 0
	for _, f := range findings {
		if f.Breaking {
			broken++
		}
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if findings == nil {
			findings = []breaking.Finding{}
		}
		_ = enc.Encode(findings)
	case "github-actions":
		for _, f := range findings {
			level := "error"
			if !f.Breaking {
				level = "notice"
			}
			fmt.Fprintf(stdout, "::%s file=%s,line=%d,col=%d,title=%s::%s\n", level, f.File, f.Line, f.Column, f.Rule, f.Message)
		}
	case "text":
		for _, f := range findings {
			fmt.Fprintln(stdout, f)
		}
		fmt.Fprintf(stdout, "ampybus-gen breaking: %d breaking change(s) against %s\n", broken, *against)
	default:
		fmt.Fprintf(stderr, "ampybus-gen breaking: --format %q: want text, json or github-actions\n", *format)
		return 2
	}
	if broken > 0 {
		return 1
	}
	return 0
}

func loadContract(ctx context.Context, path string, protoPaths []string, opts ...contract.Option) (*contract.Contract, error) {
	schemas, err := protoset.Load(ctx, protoset.Options{ProtoPaths: protoPaths})
	if err != nil {
		return nil, fmt.Errorf("ampybus-gen: %w", err)
	}
	return contract.Load(path, schemas, opts...)
}

// previous finds the previous contract and its proto roots: a file (its
// proto/ beside it, or the current roots), a directory laid out as the
// current checkout, or a git ref checked out into a temporary directory.
func previous(ctx context.Context, ref, contractPath string, protoPaths []string) (string, []string, func(), error) {
	nothing := func() {}
	if info, err := os.Stat(ref); err == nil {
		if !info.IsDir() {
			roots := protoPaths
			if dir := filepath.Join(filepath.Dir(ref), "proto"); isDir(dir) {
				roots = []string{dir}
			}
			return ref, roots, nothing, nil
		}
		return within(ref, ".", contractPath, protoPaths, nothing)
	}
	top, err := git(ctx, filepath.Dir(contractPath), "rev-parse", "--show-toplevel")
	if err != nil {
		return "", nil, nothing, fmt.Errorf("not a file, a directory or a git ref here: %w", err)
	}
	if _, err := git(ctx, top, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil {
		return "", nil, nothing, fmt.Errorf("no such file, directory or git ref")
	}
	dir, err := os.MkdirTemp("", "ampybus-breaking-*")
	if err != nil {
		return "", nil, nothing, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	archive := exec.CommandContext(ctx, "git", "-C", top, "archive", ref)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	untar.Stdin, _ = archive.StdoutPipe()
	if err := untar.Start(); err != nil {
		cleanup()
		return "", nil, nothing, err
	}
	if err := archive.Run(); err != nil {
		cleanup()
		return "", nil, nothing, fmt.Errorf("git archive %s: %w", ref, err)
	}
	if err := untar.Wait(); err != nil {
		cleanup()
		return "", nil, nothing, fmt.Errorf("unpack %s: %w", ref, err)
	}
	return within(dir, top, contractPath, protoPaths, cleanup)
}

// within maps the current contract and proto roots, relative to base, into
// dir.
func within(dir, base, contractPath string, protoPaths []string, cleanup func()) (string, []string, func(), error) {
	rel := func(p string) (string, error) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		babs, err := filepath.Abs(base)
		if err != nil {
			return "", err
		}
		r, err := filepath.Rel(babs, abs)
		if err != nil || strings.HasPrefix(r, "..") {
			return "", fmt.Errorf("%s is outside %s", p, base)
		}
		return filepath.Join(dir, r), nil
	}
	c, err := rel(contractPath)
	if err != nil {
		cleanup()
		return "", nil, func() {}, err
	}
	var roots []string
	for _, p := range protoPaths {
		r, err := rel(p)
		if err != nil {
			cleanup()
			return "", nil, func() {}, err
		}
		roots = append(roots, r)
	}
	return c, roots, cleanup, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).Output()
	return strings.TrimSpace(string(out)), err
}
