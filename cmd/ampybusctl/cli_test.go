package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/embedded"
)

// Connection flags are global: accepted before or after the command, with
// an environment variable under each, on both transports — in the
// spellings operators bring from the nats CLI and the upstream tools.
func TestGlobalFlagsBeforeOrAfterTheCommand(t *testing.T) {
	for name, url := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			topic := "ampy.dev.bars.v1.XNAS.G" + strings.ToUpper(name)
			pk := []string{"--pk", "XNAS.G" + strings.ToUpper(name)}
			// nats -s URL pub …, and kafkabusctl --brokers H:P …
			spelled := []string{"--nats", url}
			if name == "kafka" {
				spelled = []string{"--brokers", strings.TrimPrefix(url, "kafka://")}
			}
			ok(t, nil, append(append(spelled, "pub-empty", "--topic", topic), pk...)...)
			ok(t, nil, append([]string{"-v", "--bus", url, "pub-empty", "--topic", topic}, pk...)...)
			ok(t, nil, append(append([]string{"pub-empty", "--topic", topic}, pk...), "--bus", url)...)

			// The environment variable, and a flag winning over it.
			r := ctl(t, []string{"AMPYBUS_URL=" + url}, "consume", "--topic", topic, "--max", "10")
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stderr, "read 3 message(s)")
			r = ctl(t, []string{"AMPYBUS_URL=nats://127.0.0.1:1"}, "--bus", url, "consume", "--topic", topic, "--max", "10")
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stderr, "read 3 message(s)")
			r = ctl(t, []string{"AMPYBUS_URL=" + url}, "consume", "--topic", topic, "--bus", "nats://127.0.0.1:1")
			assert.Equal(t, 1, r.code, "the flag wins over $AMPYBUS_URL: %s", r.stderr)

			out := ok(t, nil, append(spelled, "list-topics", "--env", "dev")...)
			assert.Regexp(t, `dev\s+ampy\.dev\.bars\.v1\s+yes`, out)
		})
	}
}

// Each command's help shows its own flags and points to the global ones,
// which the root's help lists once.
func TestHelpShowsACommandsOwnFlags(t *testing.T) {
	sub := ok(t, nil, "pub", "-h")
	assert.Contains(t, sub, "--payload-file")
	assert.Contains(t, sub, "ampybusctl --help lists them")
	assert.NotContains(t, sub, "--sasl-user", "global flags are not repeated under each command")
	assert.Equal(t, sub, ok(t, nil, "help", "pub"))

	root := ok(t, nil, "--help")
	for _, want := range []string{"--sasl-user", "$AMPYBUS_URL", "--context", "Publish and read:", "consume", "completion", "context"} {
		assert.Contains(t, root, want)
	}
	assert.NotContains(t, root, "--payload-file")
	// dev's flag for bench's broker child stays out of the help.
	assert.NotContains(t, ok(t, nil, "dev", "--help"), "supervised")

	v := ok(t, nil, "version")
	assert.True(t, strings.HasPrefix(v, "ampybusctl "), v)
	assert.Equal(t, v, ok(t, nil, "--version"))
}

// Completion scripts for bash, zsh and fish, completing commands, flags and
// what only the contract knows: topics, subjects, envs, groups, services —
// from another team's contract when the line names one — and contexts.
// bash and fish complete in the real shells.
func TestShellCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		script := ok(t, nil, "completion", sh)
		f := filepath.Join(t.TempDir(), "ampybusctl."+sh)
		require.NoError(t, os.WriteFile(f, []byte(script), 0o644))
		check := map[string][]string{"bash": {"bash", "-n", f}, "zsh": {"zsh", "-n", f}, "fish": {"fish", "--no-execute", f}}[sh]
		out, err := exec.Command(check[0], check[1:]...).CombinedOutput()
		require.NoError(t, err, "%s does not parse its script: %s", sh, out)
	}

	cfg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg}
	ok(t, env, "context", "add", "prod-east", "--bus", "nats://10.0.0.1:4222")
	ok(t, env, "context", "add", "paper", "--bus", "kafka://10.0.0.2:9092")

	foreign, err := filepath.Abs("testdata/foreign/contract.yaml")
	require.NoError(t, err)
	protos, err := filepath.Abs("../ampybus-gen/testdata/service/proto")
	require.NoError(t, err)
	tests := []struct {
		name string
		line []string
		want []string
		not  []string
	}{
		{"command", []string{"dlq-"}, []string{"dlq-inspect", "dlq-redrive"}, []string{"pub"}},
		{"context subcommand", []string{"context", ""}, []string{"add", "ls", "use", "rm", "show"}, nil},
		{"flag", []string{"pub-empty", "--to"}, []string{"--topic", "--token"}, nil},
		{"topic", []string{"pub-empty", "--topic", "ampy.prod.o"}, []string{"ampy.prod.orders.v1."}, []string{"ampy.dev.orders.v1.", "ampy.prod.bars.v1."}},
		{"subject", []string{"sub", "--subject", "ampy.paper.fi"}, []string{"ampy.paper.fills.v1.>"}, nil},
		{"dead-letter subject", []string{"dlq-inspect", "--subject", "ampy.prod.dlq.v1.o"}, []string{"ampy.prod.dlq.v1.orders"}, nil},
		{"env", []string{"list-topics", "--env", ""}, []string{"dev", "paper", "prod"}, nil},
		{"env of another command", []string{"ensure-topic", "--env", "p"}, []string{"paper", "prod"}, []string{"dev"}},
		{"domain", []string{"ensure-topic", "--domain", "fu"}, []string{"fundamentals"}, nil},
		{"group", []string{"consume", "--group", "broker-"}, []string{"broker-alpaca"}, nil},
		{"service", []string{"acl", "--service", "o"}, []string{"ops"}, nil},
		{"global flag after the command", []string{"list-topics", "--transport", ""}, []string{"nats", "kafka"}, nil},
		{"context", []string{"--context", ""}, []string{"prod-east", "paper"}, nil},
		{"context to use", []string{"context", "use", "pr"}, []string{"prod-east"}, []string{"paper"}},
		{"another team's contract", []string{"--contract", foreign, "--proto_path", protos, "sub", "--subject", "cx."}, []string{"cx.staging.trades.v1.>"}, []string{"ampy.prod.bars.v1.>"}},
		{"another team's envs", []string{"list-topics", "--contract", foreign, "--proto_path", protos, "--env", ""}, []string{"dev", "staging"}, []string{"prod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := ok(t, env, append([]string{"__complete"}, tt.line...)...)
			got := completions(out)
			for _, w := range tt.want {
				assert.Contains(t, got, w)
			}
			for _, n := range tt.not {
				assert.NotContains(t, got, n)
			}
		})
	}

	// The shells themselves, with the binary on PATH as a user installs it.
	path := filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH")
	shellEnv := append(os.Environ(), append(isolated(), "PATH="+path, "XDG_CONFIG_HOME="+cfg)...)
	bashLine := "ampybusctl pub-empty --topic ampy.prod.or"
	cmd := exec.Command("bash", "-c", `source /usr/share/bash-completion/bash_completion
source <(ampybusctl completion bash)
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$COMP_LINE"; COMP_CWORD=$((${#COMP_WORDS[@]}-1))
__start_ampybusctl 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"`, "bash", bashLine)
	cmd.Env = shellEnv
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "ampy.prod.orders.v1.\n", string(out), "bash completes %q", bashLine)

	cmd = exec.Command("fish", "--no-config", "-c", `ampybusctl completion fish | source
complete -C "ampybusctl list-topics --env p"
complete -C "ampybusctl --context pa"`)
	cmd.Env = shellEnv
	out, err = cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, []string{"paper", "prod", "paper"}, completions(string(out)), "fish")
}

// completions are the values of cobra's __complete output (or a shell's),
// without descriptions and the directive line.
func completions(out string) []string {
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" || strings.HasPrefix(l, ":") {
			continue
		}
		v, _, _ := strings.Cut(l, "\t")
		got = append(got, v)
	}
	return got
}

// Contexts save a bus with its credentials under a name: the file is the
// user's alone, secrets are never printed, and a flag or an environment
// variable wins over the context's value. Each transport requires the
// credentials, so a command that works proves the context supplied them.
func TestContexts(t *testing.T) {
	const secret = "s3cret-Pw9"
	natsSrv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "ampy", Password: secret})
	require.NoError(t, err)
	go natsSrv.Start()
	require.True(t, natsSrv.ReadyForConnections(5*time.Second))
	t.Cleanup(natsSrv.Shutdown)
	k, err := embedded.StartKafka(embedded.KafkaOptions{Superusers: []embedded.SASLUser{{Mechanism: "SCRAM-SHA-256", User: "ampy", Password: secret}}})
	require.NoError(t, err)
	t.Cleanup(k.Shutdown)

	buses := map[string]struct {
		bus        []string
		creds      []string
		wrong      []string
		wrongByEnv string
	}{
		"nats":  {[]string{"--bus", natsSrv.ClientURL()}, []string{"--user", "ampy", "--pass", secret}, []string{"--pass", "wrong"}, "NATS_PASS=wrong"},
		"kafka": {[]string{"--brokers", strings.TrimPrefix(k.URL(), "kafka://")}, []string{"--sasl-mechanism", "scram-sha-256", "--sasl-user", "ampy", "--sasl-pass", secret}, []string{"--sasl-pass", "wrong"}, "KAFKA_SASL_PASS=wrong"},
	}
	for name, b := range buses {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := t.TempDir()
			env := []string{"XDG_CONFIG_HOME=" + cfg}
			var printed strings.Builder
			run := func(env []string, args ...string) result {
				t.Helper()
				r := ctl(t, env, args...)
				printed.WriteString(r.stdout + r.stderr)
				return r
			}
			must := func(env []string, args ...string) string {
				t.Helper()
				r := run(env, args...)
				require.Equal(t, 0, r.code, "ampybusctl %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
				return r.stdout
			}
			topic := "ampy.paper.bars.v1.XNAS.CTX"

			// Without credentials the broker refuses.
			r := run(env, append(b.bus, "list-topics", "--env", "paper")...)
			require.Equal(t, 1, r.code, r.stderr)

			out := must(env, append(append([]string{"context", "add", name, "--env", "paper", "--description", "the " + name + " test bus"}, b.bus...), b.creds...)...)
			assert.Contains(t, out, "saved context "+name)
			assert.Contains(t, out, "using context "+name, "the first context saved is selected")
			file := filepath.Join(cfg, "ampybus", "contexts.json")
			st, err := os.Stat(file)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			assert.Contains(t, string(raw), secret, "the file holds the secret, for the commands that use it")

			ls := must(env, "context", "ls")
			assert.Regexp(t, `\*\s+`+name+`\s+\S+\s+paper\s+`, ls)
			show := must(env, "context", "show")
			assert.Contains(t, show, "(hidden)")

			// The selected context: its bus, credentials and env.
			must(env, "ensure-topic", "--all")
			must(env, "pub-empty", "--topic", topic, "--pk", "XNAS.CTX")
			r = run(env, "consume", "--topic", topic, "--max", "5")
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stderr, "read 1 message(s)")
			topics := must(env, "list-topics")
			assert.Contains(t, topics, "paper")
			assert.NotRegexp(t, `(?m)^(dev|prod)\s`, topics, "list-topics shows the context's env")
			assert.Regexp(t, `(?m)^paper\s+ampy\.paper\.bars\.v1\s+yes`, topics)

			// A flag, then the environment, win over the context.
			r = run(env, append([]string{"list-topics"}, b.wrong...)...)
			assert.Equal(t, 1, r.code, "a flag wins over the context: %s", r.stderr)
			r = run(append(env, b.wrongByEnv), "list-topics")
			assert.Equal(t, 1, r.code, "the environment wins over the context: %s", r.stderr)
			must(env, "list-topics", "--env", "dev")

			// Unselected, it is chosen by --context or $AMPYBUS_CONTEXT.
			must(env, "context", "use", "--none")
			r = run(env, append(b.bus, "list-topics")...)
			assert.Equal(t, 1, r.code, "no context, no credentials")
			must(env, "--context", name, "list-topics")
			must(env, "list-topics", "--context", name)
			must(append(env, "AMPYBUS_CONTEXT="+name), "list-topics")

			// Replacing needs --force; a URL's password is hidden too.
			r = run(env, append([]string{"context", "add", name}, b.bus...)...)
			assert.Equal(t, 2, r.code)
			assert.Contains(t, r.stderr, "--force")
			must(env, "context", "add", "inline", "--bus", "nats://ampy:"+secret+"@127.0.0.1:4222")
			assert.Contains(t, must(env, "context", "ls"), "nats://ampy:xxxxx@127.0.0.1:4222")
			must(env, "context", "show", "inline")

			// A file others can read is used, with a warning.
			require.NoError(t, os.Chmod(file, 0o644))
			r = run(env, "context", "ls")
			assert.Contains(t, r.stderr, "chmod 600")
			require.NoError(t, os.Chmod(file, 0o600))

			must(env, "context", "rm", name)
			r = run(env, "--context", name, "list-topics")
			assert.Equal(t, 2, r.code)
			assert.Contains(t, r.stderr, `no such context "`+name+`"`)
			r = run(env, "context", "use", name)
			assert.Equal(t, 2, r.code)

			assert.NotContains(t, printed.String(), secret, "a secret was printed")
		})
	}
}

// Which bus a command uses, and whose credentials go with it: a context
// selected with `context use` steps aside when the command line or the
// environment names a bus, so its credentials and TLS files never reach a
// bus it does not name; a context named with --context or $AMPYBUS_CONTEXT
// wins over the environment. The context's bus here is a dead port, so a
// command that works did not use it.
func TestContextPrecedence(t *testing.T) {
	cfg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg}
	badCA := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(badCA, []byte("not a certificate"), 0o600))
	ok(t, env, "context", "add", "dead", "--bus", "nats://127.0.0.1:1", "--tls-ca", badCA, "--env", "dev")

	works := [][]string{
		{"--bus", "embedded://nats", "list-topics"},
		{"list-topics", "--transport", "nats"},
	}
	for _, args := range works {
		r := ctl(t, env, args...)
		assert.Equal(t, 0, r.code, "%v: the selected context steps aside for a bus on the command line: %s", args, r.stderr)
	}
	for _, e := range []string{"AMPYBUS_URL=embedded://nats", "AMPYBUS_TRANSPORT=nats"} {
		r := ctl(t, append(env, e), "list-topics")
		assert.Equal(t, 0, r.code, "%s: the selected context steps aside for a bus in the environment: %s", e, r.stderr)
		assert.Contains(t, r.stderr, "note: the selected context dead is not used", "and says so")
	}
	// Named, the context wins over the environment, and its TLS file is used.
	for _, named := range [][]string{{"AMPYBUS_URL=embedded://nats", "AMPYBUS_CONTEXT=dead"}, {"AMPYBUS_URL=embedded://nats"}} {
		args := []string{"list-topics"}
		if len(named) == 1 {
			args = append(args, "--context", "dead")
		}
		r := ctl(t, append(env, named...), args...)
		assert.Equal(t, 1, r.code, "%v %v: %s", named, args, r.stderr)
		assert.Contains(t, r.stderr, "tls-ca", "the named context's CA file was used")
	}
	// The demo follows the environment as every command does, and takes a
	// context only from --context: an exported $AMPYBUS_CONTEXT lingers as a
	// selection does.
	r := ctl(t, []string{"AMPYBUS_URL=nats://127.0.0.1:1"}, "demo", "--timeout", "10s")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "127.0.0.1:1")
	r = ctl(t, append(env, "AMPYBUS_CONTEXT=dead", "AMPYBUS_URL=nats://127.0.0.1:2"), "demo", "--timeout", "10s")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "127.0.0.1:2", "the demo did not take $AMPYBUS_CONTEXT")
	r = ctl(t, env, "demo", "--context", "dead", "--timeout", "10s")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "tls-ca", "--context names the demo's bus")
}

// The demo carries the global credentials to a broker that requires them,
// and prints its broker's URL without the password.
func TestDemoWithCredentials(t *testing.T) {
	const secret = "demo-S3cret-pw"
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "alice", Password: secret})
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(5*time.Second))
	t.Cleanup(s.Shutdown)
	u := strings.Replace(s.ClientURL(), "nats://", "nats://alice:"+secret+"@", 1)
	r := ctl(t, nil, "demo", "--bus", s.ClientURL(), "--user", "alice", "--pass", secret)
	require.Equal(t, 0, r.code, r.stderr)
	r = ctl(t, nil, "demo", "--bus", u)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "nats://alice:xxxxx@")
	assert.NotContains(t, r.stdout+r.stderr, secret)
}

// Secrets stay out of what ampybusctl prints on every path: a context whose
// URL holds a password, pointed at a dead port, fails with the URL
// redacted, quiet and verbose; so does a password given as a flag.
func TestSecretsStayOutOfErrors(t *testing.T) {
	const secret = "pw-9Xq2-secret"
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	ok(t, env, "context", "add", "leaky", "--bus", "nats://alice:"+secret+"@127.0.0.1:1", "--env", "dev")
	for _, args := range [][]string{
		{"list-topics"},
		{"-v", "pub-empty", "--topic", "ampy.dev.bars.v1.XNAS.AAPL", "--pk", "XNAS.AAPL"},
		{"--bus", "nats://127.0.0.1:1", "--pass", secret, "--user", "bob", "list-topics"},
		{"--brokers", "127.0.0.1:1", "--sasl-mechanism", "plain", "--sasl-user", "bob", "--sasl-pass", secret, "list-topics"},
		{"--bus", "nats:/alice:" + secret + "@127.0.0.1:1", "list-topics"},
		{"--bus", "nats://alice:a," + secret + "@127.0.0.1:1", "list-topics"},
		{"--brokers", "bob:" + secret + "@127.0.0.1:1", "list-topics"},
		{"context", "ls"},
		{"context", "show", "leaky"},
	} {
		r := ctl(t, env, args...)
		assert.NotContains(t, r.stdout+r.stderr, secret, "%v", args)
	}
	r := ctl(t, env, "list-topics")
	assert.Contains(t, r.stderr, "nats://alice:xxxxx@127.0.0.1:1")
}

// A contexts file that cannot be read stops only what needs a context.
func TestBrokenContextsFile(t *testing.T) {
	cfg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg}
	file := filepath.Join(cfg, "ampybus", "contexts.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o700))
	require.NoError(t, os.WriteFile(file, []byte("{not json"), 0o600))
	for _, args := range [][]string{{"version"}, {"help", "pub"}, {"--bus", "embedded://nats", "list-topics", "--env", "dev"}, {"validate-fixture", "--dir", "fixtures"}} {
		r := ctl(t, env, args...)
		assert.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
	}
	r := ctl(t, env, "list-topics", "--env", "dev")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "is not a contexts file", "a warning says why no context applies")
	r = ctl(t, env, "--context", "prod", "list-topics")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "is not a contexts file")

	// A context emptied by hand is refused by name, and removable.
	require.NoError(t, os.WriteFile(file, []byte(`{"current":"prod","contexts":{"prod":null}}`), 0o600))
	r = ctl(t, env, "list-topics")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, `context "prod"`)
	assert.Contains(t, r.stderr, "has no bus")
	ok(t, env, "context", "rm", "prod")
	ok(t, env, "list-topics", "--env", "dev")
}

// Contexts added by several ampybusctl at once are all kept: each change
// is a locked read-modify-write of the file.
func TestConcurrentContextAdds(t *testing.T) {
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() { // exec directly: t.Fatal belongs to the test's goroutine
			defer wg.Done()
			cmd := exec.Command(bin, "context", "add", "c"+strconv.Itoa(i), "--bus", "nats://10.0.0."+strconv.Itoa(i)+":4222")
			cmd.Env = append(append(os.Environ(), isolated()...), env...)
			if err := cmd.Run(); err != nil {
				codes[i] = -1
				if ee, ok := err.(*exec.ExitError); ok {
					codes[i] = ee.ExitCode()
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, make([]int, n), codes)
	ls := ok(t, env, "context", "ls")
	for i := range n {
		assert.Contains(t, ls, "nats://10.0.0."+strconv.Itoa(i)+":4222")
	}
}
