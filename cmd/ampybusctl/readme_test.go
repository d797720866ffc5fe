package main_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The commands the README and the upstream project document run as written.

// The shipped fixtures validate through the CLI, as the README says.
func TestValidateShippedFixtures(t *testing.T) {
	r := ctl(t, nil, "validate-fixture", "--dir", "fixtures")
	require.Equal(t, 0, r.code, r.stdout)
	assert.Contains(t, r.stderr, "59 fixture(s) valid")
	ok(t, nil, "fixtures", "--out", "fixtures", "--check")
}

// The README's ampybusctl block runs as written, on each transport, with
// only AMPYBUS_URL changed.
func TestReadmeCommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	cmds := readmeCommands(t, string(readme))
	require.GreaterOrEqual(t, len(cmds), 15)
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	for name, url := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			work := t.TempDir()
			require.NoError(t, os.Symlink(filepath.Join(root, "fixtures"), filepath.Join(work, "fixtures")))
			for _, args := range cmds {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				cmd := exec.CommandContext(ctx, bin, args...)
				cmd.Dir = work
				cmd.Env = append(append(os.Environ(), isolated()...), "AMPYBUS_URL="+url)
				out, err := cmd.CombinedOutput()
				cancel()
				require.NoError(t, err, "ampybusctl %s\n%s", strings.Join(args, " "), out)
			}
			dumped, _ := filepath.Glob(filepath.Join(work, "dlq_dump", "*.json"))
			require.Len(t, dumped, 1, "consume --settle dead-lettered the poison message, and only it")
			data, err := os.ReadFile(dumped[0])
			require.NoError(t, err)
			assert.Contains(t, string(data), `"dlq_reason": "decode_error`)
			assert.Contains(t, string(data), "co_poison_001")
		})
	}
}

// readmeCommands returns the argument lists of the ampybusctl lines in the
// README's tested block, continuation lines joined and quotes removed.
func readmeCommands(t *testing.T, readme string) [][]string {
	t.Helper()
	i := strings.Index(readme, "<!-- ampybusctl commands: tested -->")
	require.GreaterOrEqual(t, i, 0, "README has no tested ampybusctl block")
	block := readme[i:]
	block = block[strings.Index(block, "```sh\n")+6:]
	block = block[:strings.Index(block, "```")]
	block = strings.ReplaceAll(block, "\\\n", " ")
	var cmds [][]string
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "ampybusctl ") {
			continue
		}
		args := shellWords(t, line)
		cmds = append(cmds, args[1:])
	}
	return cmds
}

// shellWords splits a command line as sh would for the quoting the README uses.
func shellWords(t *testing.T, s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	require.Zero(t, quote, "unbalanced quotes in %q", s)
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// The upstream README's Kafka commands run as written: kafkabusctl,
// kafkainspect and kafkapoison as first arguments, and as the program's
// name (a symlink), against a Kafka broker given by --brokers.
func TestUpstreamCommandsRunAsWritten(t *testing.T) {
	u, err := url.Parse(brokers(t)["kafka"])
	require.NoError(t, err)
	hostport := u.Host
	run := func(args ...string) result {
		t.Helper()
		r := ctl(t, nil, args...)
		require.Equal(t, 0, r.code, "%s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
		return r
	}
	r := run("kafkabusctl", "ensure-topic", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--partitions", "3")
	assert.Contains(t, r.stderr, "--partitions 3 ignored: contract.yaml gives bars 12 partitions")

	sub := start(t, nil, "kafkabusctl", "sub", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--group", "cli-consumer")
	sub.waitStderr(t, "listening on ampy.prod.bars.v1.XNAS.AAPL")
	r = run("kafkabusctl", "pub-empty", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL",
		"--producer", "yfinance-go@ingest-1", "--source", "yfinance-go", "--pk", "XNAS.AAPL")
	assert.Contains(t, r.stdout, "published ampy.prod.bars.v1.XNAS.AAPL")
	require.Eventually(t, func() bool { return strings.Contains(sub.stdout(), "── ampy.prod.bars.v1.XNAS.AAPL") }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, sub.cmd.Process.Signal(os.Interrupt))
	sub.wait(t)

	r = run("kafkainspect", "list-topics", "--brokers", hostport)
	assert.Regexp(t, `(?m)^prod\s+ampy\.prod\.bars\.v1\s+yes`, r.stdout)
	r = run("kafkainspect", "describe-topic", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL")
	assert.Contains(t, r.stdout, "partition_key {mic}.{symbol}")
	r = run("kafkainspect", "consume", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--max", "10", "--decode")
	assert.Contains(t, r.stderr, "read 1 message(s) from ampy.prod.bars.v1.XNAS.AAPL")

	// kafkapoison as the program's own name.
	dir := t.TempDir()
	require.NoError(t, os.Symlink(bin, filepath.Join(dir, "kafkapoison")))
	cmd := exec.Command(filepath.Join(dir, "kafkapoison"), "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL",
		"--producer", "poison@cli", "--source", "poison-test", "--pk", "XNAS.AAPL")
	cmd.Env = append(os.Environ(), isolated()...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "will dead-letter it to ampy.prod.dlq.v1.bars")

	// kafkainspect without a command consumes.
	r = run("kafkainspect", "--brokers", hostport, "--topic", "ampy.prod.bars.v1.XNAS.AAPL", "--group", "inspector", "--max", "5")
	assert.Contains(t, r.stderr, "read 2 message(s) from ampy.prod.bars.v1.XNAS.AAPL, 1 breaking the contract")
}
