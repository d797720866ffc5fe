package envelope

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestMessageIDIsUUIDv7(t *testing.T) {
	at := time.Date(2026, 1, 2, 16, 30, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		id   string
		at   time.Time // zero: now
	}{
		{"now", NewMessageID(), time.Time{}},
		{"at a set time", MessageIDAt(at), at},
		{"long ago", MessageIDAt(time.UnixMilli(1 << 32)), time.UnixMilli(1 << 32)},
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
			if tc.at.IsZero() {
				return
			}
			if ms := time.Unix(u.Time().UnixTime()).UnixMilli(); ms < tc.at.UnixMilli() {
				t.Fatalf("%q carries %d ms, before the %d it was made at", tc.id, ms, tc.at.UnixMilli())
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
