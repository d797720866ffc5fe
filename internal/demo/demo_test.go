package demo_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/demo"
)

// The demo is the same code on every transport: only the URL changes.
func TestDemo(t *testing.T) {
	for _, url := range []string{"embedded://nats", "embedded://kafka"} {
		t.Run(url, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, demo.Run(context.Background(), url, &out))
			s := out.String()
			require.Regexp(t, regexp.MustCompile(`summary: published 6, consumed 6, `), s)
			require.Equal(t, 3, strings.Count(s, "← consumed  ampy.dev.bars.v1.XNAS.AAPL"))
			require.Contains(t, s, "key co_demo_001")
			require.Contains(t, s, "key ALPACA-PAPER-01|co_demo_001")
			require.Contains(t, s, "SIDE_BUY 100 AAPL @ 192.1000")
		})
	}
}
