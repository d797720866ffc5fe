package loadbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
)

// The supervised broker child takes commands on its stdin, one per line,
// and answers on its stdout: a CPU profile of the broker alone, over a run's
// measured window, so the broker's share of a benchmark can be read as the
// client's is.
const (
	// profileCmd starts a CPU profile of the child into the path after it.
	profileCmd = "profile "
	// profileStopCmd stops it; the child answers ProfiledLine PATH once the
	// file is written.
	profileStopCmd = "profile-stop"
	// ProfiledLine starts the child's answer to profileStopCmd.
	ProfiledLine = "ampybus-dev-profiled "
)

// Supervise serves a parent's commands from r, answering on w, until r
// ends: the parent holds r open while it needs the child. It is the broker
// child's side of StartChild.
func Supervise(r io.Reader, w io.Writer) {
	var f *os.File
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, profileCmd) && f == nil:
			path := strings.TrimPrefix(line, profileCmd)
			var err error
			if f, err = os.Create(path); err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
					f = nil
				}
			}
			if err != nil {
				fmt.Fprintf(w, "%s%s error %v\n", ProfiledLine, path, err)
			}
		case line == profileStopCmd && f != nil:
			pprof.StopCPUProfile()
			err := f.Close()
			fmt.Fprintf(w, "%s%s%s\n", ProfiledLine, f.Name(), errSuffix(err))
			f = nil
		}
	}
	if f != nil {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " error " + err.Error()
}

// Profile starts a CPU profile of the broker child into path; stop ends it
// and returns once the child has written the file. A broker in this process
// has no profile of its own: the client's holds its work.
func (b *Broker) Profile(path string) (stop func(context.Context) error, err error) {
	if b.stdin == nil {
		return nil, errors.New("the broker runs in this process: its work is in the client's profile")
	}
	if _, err := fmt.Fprintf(b.stdin, "%s%s\n", profileCmd, path); err != nil {
		return nil, fmt.Errorf("profile the broker child: %w", err)
	}
	return func(ctx context.Context) error {
		if _, err := fmt.Fprintln(b.stdin, profileStopCmd); err != nil {
			return fmt.Errorf("stop the broker child's profile: %w", err)
		}
		select {
		case line := <-b.profiled:
			if _, msg, failed := strings.Cut(line, " error "); failed {
				return fmt.Errorf("the broker child's profile %s: %s", path, msg)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("the broker child's profile %s: %w", path, ctx.Err())
		}
	}, nil
}

// profiler writes a run's CPU profiles: this process's, and the broker
// child's when it has one.
type profiler struct {
	dir    string
	broker func(path string) (func(context.Context) error, error)
}

// start begins the profiles of one run, named for it; the returned func
// stops them and returns the files written. Besides the CPU profiles, the
// client's allocations are snapshot at both ends of the window: pprof's
// -base shows what the run itself allocated, and where.
func (p *profiler) start(name string) (func(context.Context) ([]string, error), error) {
	allocsBase := filepath.Join(p.dir, name+".allocs-base.pprof")
	if err := writeAllocs(allocsBase); err != nil {
		return nil, err
	}
	client := filepath.Join(p.dir, name+".client.pprof")
	f, err := os.Create(client)
	if err != nil {
		return nil, fmt.Errorf("--profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--profile: %w", err)
	}
	var stopBroker func(context.Context) error
	broker := filepath.Join(p.dir, name+".broker.pprof")
	if p.broker != nil {
		if stopBroker, err = p.broker(broker); err != nil {
			pprof.StopCPUProfile()
			f.Close()
			return nil, err
		}
	}
	return func(ctx context.Context) ([]string, error) {
		pprof.StopCPUProfile()
		allocs := filepath.Join(p.dir, name+".allocs.pprof")
		files := []string{client, allocsBase, allocs}
		err := errors.Join(f.Close(), writeAllocs(allocs))
		if stopBroker != nil {
			err = errors.Join(err, stopBroker(ctx))
			files = append(files, broker)
		}
		return files, err
	}, nil
}

// writeAllocs writes the allocations so far, as of a collection made now
// (the profile counts only what a completed cycle has seen).
func writeAllocs(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("--profile: allocations: %w", err)
	}
	return f.Close()
}
