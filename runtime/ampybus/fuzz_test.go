package ampybus_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// FuzzGunzipLimit: whatever the bytes, GunzipLimit never returns more than
// its limit, agrees with the standard reader on what fits, and calls a
// stream over the limit a decompression_limit whatever its trailer says.
func FuzzGunzipLimit(f *testing.F) {
	payload := bytes.Repeat([]byte("ampy-bus "), 300)
	one := ampybus.Gzip(payload)
	lying := bytes.Clone(one)
	copy(lying[len(lying)-4:], []byte{1, 0, 0, 0})
	f.Add(one, uint16(4096))
	f.Add(one, uint16(100))
	f.Add(append(bytes.Clone(one), one...), uint16(6000))
	f.Add(lying, uint16(4096))
	f.Add(one[:len(one)/2], uint16(4096))
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"), uint16(10))
	f.Add([]byte("not gzip"), uint16(10))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		got, err := ampybus.GunzipLimit(in, int64(limit))
		// The reference: the standard reader, allowed one byte past the limit.
		var want []byte
		r, rerr := gzip.NewReader(bytes.NewReader(in))
		if rerr == nil {
			want, rerr = io.ReadAll(io.LimitReader(r, int64(limit)+1))
		}
		switch {
		case err == nil:
			require.LessOrEqual(t, len(got), int(limit))
			require.NoError(t, rerr, "GunzipLimit accepted what the standard reader refuses")
			assert.Equal(t, want, got)
		case errors.Is(err, ampybus.ErrDecompressionLimit):
			assert.Greater(t, len(want), int(limit), "refused as over the limit, but it inflates to %d bytes", len(want))
		default:
			assert.Error(t, rerr, "GunzipLimit refused (%v) what the standard reader inflates", err)
		}
	})
}

// FuzzResolve: Resolve and ResolveSubject never panic, and a topic that
// resolves is concrete, names its domain and route, and reads back the same.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"ampy.prod.bars.v1.XNAS.AAPL", "ampy.dev.ticks.v1.trade.MSFT", "ampy.prod.fx.v1.rates", "ampy.prod.fx.v1.USD.JPY",
		"ampy.prod.dlq.v1.bars", "ampy.prod.bars.v1.*.*", "ampy.prod.bars.v1.>", "ampy.*.bars.v1.XNAS.AAPL",
		"ampy.prod.bars.v1.XNAS.AAPL.extra", "ampy.prod.dlq.v1.ampy.prod.bars.v1.XNAS.AAPL", "ampy.prod.bars.v2.XNAS.AAPL",
		"ampy.prod.orders.v1.requests", "ampy..bars.v1.X.Y", ">", "*", "", "ampy.prod.bars.v1.XNAS.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = generated.Catalog.ResolveSubject(s)
		tp, err := generated.Catalog.Resolve(s)
		if err != nil {
			return
		}
		require.Equal(t, s, tp.Name)
		require.NotNil(t, tp.Domain)
		assert.Equal(t, tp.Domain.Prefix(tp.Env)+"."+tp.Subtopic, s)
		_, err = generated.Catalog.ResolveSubject(s)
		assert.NoError(t, err, "a topic that resolves is a subject that resolves")
	})
}
