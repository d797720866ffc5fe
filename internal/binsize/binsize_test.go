// Package binsize holds two programs that publish the same bar batch on
// NATS, one through the generated API (typed/) and one on nats.go directly
// (raw/), and a test that builds both: the core must not make a service pay
// for brokers it does not use.
package binsize

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// maxRatio is the bound on typed/raw binary size.
const maxRatio = 1.15

// The typed publisher links the core and the NATS binding only, so it
// builds to within maxRatio of the raw program; both run against a real
// server, so neither is a stub. The README quotes the figure this logs.
func TestPublisherBinarySize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs")
	}
	dir := t.TempDir()
	size := map[string]int64{}
	for _, name := range []string{"typed", "raw"} {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, "./"+name)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Run(), "go build ./%s", name)
		fi, err := os.Stat(out)
		require.NoError(t, err)
		size[name] = fi.Size()
	}
	ratio := float64(size["typed"]) / float64(size["raw"])
	t.Logf("typed %.1f MB, raw %.1f MB: %.3fx", float64(size["typed"])/1e6, float64(size["raw"])/1e6, ratio)
	assert.LessOrEqual(t, ratio, maxRatio, "the typed publisher links more than the core and its binding")
	for _, name := range []string{"typed", "raw"} {
		assert.NotContains(t, symbols(t, filepath.Join(dir, name)), "nats-server", "%s links the NATS server", name)
	}
	assert.NotContains(t, symbols(t, filepath.Join(dir, "typed")), "franz-go", "a NATS service links the Kafka client")

	n, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	defer n.Shutdown()
	// The stream is provisioned first, as in a deployment: the publisher
	// holds no right to create it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := ampybus.Open(ctx, n.URL(), ampybus.WithProvisioning())
	require.NoError(t, err)
	require.NoError(t, admin.Ensure(ctx, bars.Domain))
	require.NoError(t, admin.Close())
	subject := fmt.Sprintf("%d.ampy.dev.bars.v1.XNAS.AAPL", transport.Partition("XNAS.AAPL", bars.Domain.Partitions))
	for _, name := range []string{"typed", "raw"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(dir, name), subject)
		cmd.Env = append(os.Environ(), "AMPYBUS_URL="+n.URL())
		out, err := cmd.CombinedOutput()
		cancel()
		require.NoError(t, err, "%s: %s", name, out)
		assert.Contains(t, string(out), "AMPY_DEV_BARS_V1", name)
		assert.Contains(t, string(out), map[string]string{"typed": " 1\n", "raw": " 2\n"}[name], "%s: the stream's sequence", name)
	}
}

// symbols lists the packages a binary was built from.
func symbols(t *testing.T, bin string) string {
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.ToLower(string(out))
}
