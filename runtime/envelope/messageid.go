package envelope

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// lastV7 is the millisecond and 12-bit sub-millisecond stamp of the last
// id made in this process, so ids made here sort in the order they were
// made even when the clock stands still or steps back.
var lastV7 atomic.Int64

// NewMessageID returns a fresh UUIDv7 (RFC 9562): unique, and sortable by
// creation time.
func NewMessageID() string { return MessageIDAt(time.Now()) }

// MessageIDAt is NewMessageID for a message made at t, so a publish reads
// the clock once for its id and its produced_at. The 62 random bits come
// from crypto/rand: a guessable id would let a publisher make the broker's
// dedupe drop someone else's next message.
func MessageIDAt(t time.Time) string { return uuidV7(monotonicV7(t)) }

// uuidV7 is the UUIDv7 of stamp (milliseconds shifted left 12 bits, plus
// 1/4096ths of one) with fresh random bits, in its canonical form.
func uuidV7(stamp int64) string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], uint64(stamp>>12)<<16) // unix_ts_ms in the top 48 bits
	u[6] = 0x70 | byte(stamp>>8)&0x0f                        // version 7, then rand_a: the sub-millisecond stamp
	u[7] = byte(stamp)
	if _, err := rand.Read(u[8:]); err != nil {
		panic("envelope: crypto/rand failed: " + err.Error())
	}
	u[8] = 0x80 | u[8]&0x3f // the RFC 9562 variant
	return formatUUID(&u)
}

// monotonicV7 is t's millisecond shifted left 12 bits, plus its fraction
// of a millisecond in 1/4096ths, or one more than the last stamp made here
// when that is not later. A compare-and-swap, not a lock: every publishing
// goroutine takes one.
func monotonicV7(t time.Time) int64 {
	ns := t.UnixNano()
	ms := ns / int64(time.Millisecond)
	stamp := ms<<12 | (ns-ms*int64(time.Millisecond))*4096/int64(time.Millisecond)
	for {
		last := lastV7.Load()
		next := stamp
		if next <= last {
			next = last + 1
		}
		if lastV7.CompareAndSwap(last, next) {
			return next
		}
	}
}

// formatUUID writes u in its canonical 8-4-4-4-12 lowercase hex form.
func formatUUID(u *[16]byte) string {
	const digits = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = digits[b>>4], digits[b&0x0f]
		j += 2
	}
	return string(s[:])
}
