package chaos_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// bins are the programs the tests run as processes, built once.
var bins struct{ member, natsServer, ctl string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ampybus-chaos-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.member = filepath.Join(dir, "member")
	bins.natsServer = filepath.Join(dir, "nats-server")
	bins.ctl = filepath.Join(dir, "ampybusctl")
	for out, pkg := range map[string]string{
		bins.member:     "github.com/ampyfin/ampy-bus/internal/chaos/member",
		bins.natsServer: "github.com/nats-io/nats-server/v2", // the real server, from the module cache
		bins.ctl:        "github.com/ampyfin/ampy-bus/cmd/ampybusctl",
	} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running child process; its output goes to a file in the test's
// directory, shown when the test fails.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  string
	done chan struct{}
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".out")
	f, err := os.Create(out)
	require.NoError(t, err)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start(), "start %s", name)
	p := &proc{t: t, name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(out)
			t.Logf("--- output of %s (last 3000 bytes):\n%s", name, tail(string(b), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitOutput waits until the process prints a line containing s.
func (p *proc) waitOutput(s string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		f, err := os.Open(p.out)
		if err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.Contains(sc.Text(), s) {
					f.Close()
					return
				}
			}
			f.Close()
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.out)
			p.t.Fatalf("%s exited before printing %q:\n%s", p.name, s, tail(string(b), 3000))
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("%s did not print %q within %v", p.name, s, within)
}

// kill sends SIGKILL, as a crash or an OOM kill would, and reaps the process.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to exit (SIGTERM) and waits for it.
func (p *proc) stop(within time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		p.t.Errorf("%s did not exit within %v of SIGTERM", p.name, within)
		p.kill()
	}
}

// freePorts finds n distinct free loopback ports (listening on all of them
// at once, so none is handed out twice).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// waitPort waits until something accepts connections on port.
func waitPort(t *testing.T, port int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on 127.0.0.1:%d after %v", port, within)
}

// broker is a broker running as processes, that a test can kill and restart
// on the same port and store.
type broker interface {
	url() string
	kill(i int)
	restart(t *testing.T, i int)
}

// natsServer is one or more real nats-server processes (a cluster when more).
type natsServer struct {
	dir         string
	ports       []int
	routes      []int
	procs       []*proc
	clusterName string
}

func startNATS(t *testing.T, nodes int) *natsServer {
	t.Helper()
	s := &natsServer{dir: t.TempDir(), clusterName: "chaos"}
	ports := freePorts(t, 2*nodes)
	s.ports = ports[:nodes]
	if nodes > 1 {
		s.routes = ports[nodes:]
	}
	s.procs = make([]*proc, nodes)
	for i := range nodes {
		s.restart(t, i)
	}
	return s
}

func (s *natsServer) restart(t *testing.T, i int) {
	t.Helper()
	name := "n" + strconv.Itoa(i+1)
	args := []string{bins.natsServer, "-a", "127.0.0.1", "-p", strconv.Itoa(s.ports[i]), "-js", "-sd", filepath.Join(s.dir, name), "-n", name}
	if len(s.routes) > 0 {
		var routes []string
		for _, r := range s.routes {
			routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(r))
		}
		args = append(args, "--cluster_name", s.clusterName, "--cluster", "nats://127.0.0.1:"+strconv.Itoa(s.routes[i]), "--routes", strings.Join(routes, ","))
	}
	s.procs[i] = start(t, "nats-"+name, args...)
	waitPort(t, s.ports[i], 20*time.Second)
}

func (s *natsServer) kill(i int) { s.procs[i].kill() }

func (s *natsServer) url() string {
	var urls []string
	for _, p := range s.ports {
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(p))
	}
	return strings.Join(urls, ",")
}

// kafkaServer is kfake with a data directory, run by ampybusctl dev.
type kafkaServer struct {
	dir  string
	port int
	p    *proc
}

func startKafka(t *testing.T) *kafkaServer {
	t.Helper()
	s := &kafkaServer{dir: t.TempDir(), port: freePorts(t, 1)[0]}
	s.restart(t, 0)
	return s
}

func (s *kafkaServer) restart(t *testing.T, _ int) {
	t.Helper()
	s.p = start(t, "kafka", bins.ctl, "dev", "--kafka", "--kafka-port", strconv.Itoa(s.port), "--store", s.dir)
	s.p.waitOutput("ready", 30*time.Second)
}

func (s *kafkaServer) kill(int) { s.p.kill() }

func (s *kafkaServer) url() string { return "kafka://127.0.0.1:" + strconv.Itoa(s.port) }

// startMember runs one group member; its effect log is returned.
func startMember(t *testing.T, b broker, name string) (*proc, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), name+".log")
	p := start(t, name, bins.member, "-bus", b.url(), "-log", log)
	p.waitOutput("ready", 60*time.Second)
	return p, log
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
