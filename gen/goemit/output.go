package goemit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"golang.org/x/mod/modfile"
)

// Report is what Write changed, with paths relative to its dir.
type Report struct {
	Written, Removed []string
	Unchanged        int
}

// Write makes dir hold exactly files: it writes new and changed files and
// deletes generated files (those starting with Marker) that are no longer
// produced. Files it did not generate are left alone.
func Write(dir string, files map[string][]byte) (Report, error) {
	var r Report
	stale, err := staleFiles(dir, files)
	if err != nil {
		return r, err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, files[name]) {
			r.Unchanged++
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return r, err
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return r, err
		}
		r.Written = append(r.Written, name)
	}
	for _, name := range stale {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.Remove(p); err != nil {
			return r, err
		}
		r.Removed = append(r.Removed, name)
		// Drop the directory too if nothing else is left in it.
		_ = os.Remove(filepath.Dir(p))
	}
	return r, nil
}

// Check compares dir with files and returns a unified diff of every
// difference (missing, changed or stale files); empty means up to date.
func Check(dir string, files map[string][]byte) (string, error) {
	stale, err := staleFiles(dir, files)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, name := range slices.Sorted(maps.Keys(files)) {
		old, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if bytes.Equal(old, files[name]) {
			continue
		}
		from := "a/" + name
		if old == nil {
			from = "/dev/null"
		}
		diff(&out, from, "b/"+name, string(old), string(files[name]))
	}
	for _, name := range stale {
		old, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return "", err
		}
		diff(&out, "a/"+name, "/dev/null", string(old), "")
	}
	return out.String(), nil
}

func diff(w *strings.Builder, from, to, a, b string) {
	text, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a), B: difflib.SplitLines(b), FromFile: from, ToFile: to, Context: 3,
	})
	w.WriteString(text)
}

// staleFiles lists generated files under dir that files no longer contains.
func staleFiles(dir string, files map[string][]byte) ([]string, error) {
	var stale []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if _, ok := files[rel]; ok {
			return nil
		}
		gen, err := isGenerated(p)
		if err != nil {
			return err
		}
		if gen {
			stale = append(stale, rel)
		}
		return nil
	})
	sort.Strings(stale)
	return stale, err
}

func isGenerated(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return false, nil
	}
	return strings.TrimSpace(line) == Marker, nil
}

// ImportPathOf finds the Go import path of dir from the nearest go.mod above it.
func ImportPathOf(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			mod := modulePath(data)
			if mod == "" {
				return "", fmt.Errorf("%s: no module line", filepath.Join(d, "go.mod"))
			}
			rel, _ := filepath.Rel(d, abs)
			if rel == "." {
				return mod, nil
			}
			return mod + "/" + filepath.ToSlash(rel), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: pass -import-path", abs)
		}
	}
}

func modulePath(gomod []byte) string {
	return modfile.ModulePath(gomod)
}
