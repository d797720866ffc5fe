package envelope

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestMessageIDIsUUIDv7(t *testing.T) {
	at := time.Date(2026, 1, 2, 16, 30, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name  string
		id    string
		stamp int64 // the stamp it encodes; 0: not known (a fresh id)
	}{
		{"now", NewMessageID(), 0},
		{"at a set time", uuidV7(stampOf(at)), stampOf(at)},
		{"the smallest stamp", uuidV7(1), 1},
		{"the largest 48-bit millisecond", uuidV7(1<<60 - 1), 1<<60 - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := uuid.Parse(tc.id)
			if err != nil {
				t.Fatalf("%q: %v", tc.id, err)
			}
			if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
				t.Fatalf("%q: version %d variant %v, want 7 and RFC 4122", tc.id, u.Version(), u.Variant())
			}
			if u.String() != tc.id {
				t.Fatalf("%q is not canonical: %q", tc.id, u.String())
			}
			if tc.stamp == 0 {
				return
			}
			ms := int64(binary.BigEndian.Uint64(u[:8]) >> 16)
			frac := int64(u[6]&0x0f)<<8 | int64(u[7])
			if ms != tc.stamp>>12 || frac != tc.stamp&0xfff {
				t.Fatalf("%q carries %d ms + %d/4096, want %d ms + %d/4096", tc.id, ms, frac, tc.stamp>>12, tc.stamp&0xfff)
			}
		})
	}
}

// stampOf is t's stamp before any monotonic bump.
func stampOf(t time.Time) int64 {
	ns := t.UnixNano()
	ms := ns / int64(time.Millisecond)
	return ms<<12 | (ns-ms*int64(time.Millisecond))*4096/int64(time.Millisecond)
}

func TestMonotonicV7(t *testing.T) {
	defer func(prev int64) { lastV7.Store(max(prev, lastV7.Load())) }(lastV7.Load())
	at := time.Date(2026, 1, 2, 16, 30, 0, 500_000_000+250_000, time.UTC) // a quarter into a millisecond
	ms := at.UnixMilli()
	for _, tc := range []struct {
		name string
		last int64
		want int64
	}{
		{"the clock moved on", 0, ms<<12 | 1024},
		{"the same stamp again", ms<<12 | 1024, ms<<12 | 1025},
		{"the clock stepped back", (ms+5)<<12 | 7, (ms+5)<<12 | 8},
		{"a full millisecond of ids", ms<<12 | 0xfff, (ms + 1) << 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lastV7.Store(tc.last)
			if got := monotonicV7(at); got != tc.want {
				t.Fatalf("after %#x: got %#x, want %#x", tc.last, got, tc.want)
			}
			if lastV7.Load() != tc.want {
				t.Fatalf("the stamp made was not kept as the last: %#x", lastV7.Load())
			}
		})
	}
}

// TestMessageIDsSortInOrderMade checks uniqueness and order across
// goroutines and under a clock that stands still or steps back.
func TestMessageIDsSortInOrderMade(t *testing.T) {
	frozen := time.Now()
	var prev string
	for i := range 5000 {
		at := frozen
		if i%7 == 0 {
			at = frozen.Add(-time.Second) // a clock stepped back
		}
		id := MessageIDAt(at)
		if id <= prev {
			t.Fatalf("id %d %q does not sort after %q", i, id, prev)
		}
		prev = id
	}

	const goroutines, each = 8, 2000
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				ids[g] = append(ids[g], NewMessageID())
			}
		})
	}
	wg.Wait()
	seen := make(map[string]bool, goroutines*each)
	for g := range ids {
		for i, id := range ids[g] {
			if seen[id] {
				t.Fatalf("id %q made twice", id)
			}
			seen[id] = true
			if i > 0 && id <= ids[g][i-1] {
				t.Fatalf("goroutine %d: %q does not sort after %q", g, id, ids[g][i-1])
			}
		}
	}
}

func BenchmarkNewMessageID(b *testing.B) {
	b.Run("envelope", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = NewMessageID()
			}
		})
	})
	b.Run("google-uuid", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = uuid.Must(uuid.NewV7()).String()
			}
		})
	})
}
