// Command benchdoc runs the benchmarks the README's Performance section
// quotes and rewrites that section between its markers, so every figure
// there comes with the command that produced it and a range over runs:
//
//	make bench   (go run ./internal/benchdoc -readme README.md)
//
// It builds ampybusctl, runs `ampybusctl bench --compare --json` for each
// scenario (the broker in a child process, typed and raw alternated), the
// observability-overhead Go benchmarks with -count, and the binary-size test.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ampyfin/ampy-bus/internal/loadbench"
)

func main() {
	readme := flag.String("readme", "README.md", "file whose Performance section is rewritten")
	rounds := flag.Int("rounds", 0, "rounds of every comparison (typed and raw alternated); 0: each scenario's own (3, or 5 where runs swing most)")
	only := flag.String("only", "", "run only the scenarios whose name contains this")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *readme, *rounds, *only); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, readme string, rounds int, only string) error {
	dir, err := os.MkdirTemp("", "benchdoc")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctl := filepath.Join(dir, "ampybusctl")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", ctl, "./cmd/ampybusctl").CombinedOutput(); err != nil {
		return fmt.Errorf("build ampybusctl: %v\n%s", err, out)
	}
	doc := Doc{Machine: machine(), Date: time.Now().UTC().Format("2006-01-02")}
	for _, s := range Scenarios {
		if only != "" && !strings.Contains(s.Name, only) {
			continue
		}
		args := append(append([]string{"bench"}, s.Args...), "--compare", "--rounds", fmt.Sprint(cmp.Or(rounds, s.Rounds)), "--json")
		fmt.Fprintf(os.Stderr, "benchdoc: ampybusctl %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, ctl, args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		var rep loadbench.Report
		if err := json.Unmarshal(out, &rep); err != nil {
			return fmt.Errorf("%s: reading the report: %w", s.Name, err)
		}
		doc.Benches = append(doc.Benches, Bench{Scenario: s, Command: "ampybusctl " + strings.Join(args[:len(args)-1], " "), Report: rep})
	}
	if only == "" {
		if doc.Overhead, err = overhead(ctx, cmp.Or(rounds, defaultRounds)); err != nil {
			return err
		}
		if doc.BinSize, err = binSize(ctx); err != nil {
			return err
		}
	}
	text, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	updated, err := Replace(text, doc)
	if err != nil {
		return err
	}
	return os.WriteFile(readme, updated, 0o644)
}

// overheadBench is the Go benchmark comparing the bare bus with the hooks
// of plugin/ampyprom and plugin/ampyotel attached.
const overheadBench = `Publish/(typed|typed\+metrics|typed\+otel)/async$|Consume/(engine|engine\+metrics|engine\+otel)$`

func overhead(ctx context.Context, count int) (Overhead, error) {
	args := []string{"test", "-run", "^$", "-bench", overheadBench, "-benchmem", "-benchtime", "40000x", "-count", fmt.Sprint(count), "./runtime/ampybus/"}
	fmt.Fprintf(os.Stderr, "benchdoc: go %s\n", strings.Join(args, " "))
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return Overhead{}, fmt.Errorf("observability benchmarks: %v\n%s", err, out)
	}
	return Overhead{Command: "go " + quoteArgs(args), Results: ParseGoBench(out)}, nil
}

func binSize(ctx context.Context) (string, error) {
	args := []string{"test", "-count=1", "-v", "-run", "BinarySize", "./internal/binsize"}
	fmt.Fprintf(os.Stderr, "benchdoc: go %s\n", strings.Join(args, " "))
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("binary size test: %v\n%s", err, out)
	}
	for line := range bytes.Lines(out) {
		if _, rest, ok := strings.Cut(string(line), "binsize_test.go:"); ok && strings.Contains(rest, "typed") {
			_, figure, _ := strings.Cut(rest, ": ")
			return fmt.Sprintf("%s (`go %s`)", strings.TrimSpace(figure), strings.Join(args, " ")), nil
		}
	}
	return "", fmt.Errorf("binary size test printed no figure:\n%s", out)
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, `|()$\^+ `) {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func machine() string {
	v, _ := exec.Command("go", "env", "GOVERSION").Output()
	return fmt.Sprintf("%d cores, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, strings.TrimSpace(string(v)))
}
