package ampybus

import (
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

func TestOrderTracker(t *testing.T) {
	o := newOrderTracker(8)
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	_, behind := o.behind("k", at(5))
	assert.False(t, behind, "an unknown key is never behind")
	o.advance("k", at(5))
	o.advance("k", at(3)) // older: ignored
	newest, behind := o.behind("k", at(4))
	assert.True(t, behind)
	assert.Equal(t, at(5).UTC(), newest)
	_, behind = o.behind("k", at(5))
	assert.False(t, behind, "the same time is not behind")

	// Past capacity a quarter is forgotten (any quarter: "k" may survive);
	// freed slots are reused and the keys still held keep their times.
	want := map[string]time.Time{"k": at(5)}
	for i := range 40 {
		k := "key" + strconv.Itoa(i)
		want[k] = at(100 + i)
		o.advance(k, want[k])
	}
	assert.LessOrEqual(t, len(o.slot), 8)
	assert.LessOrEqual(t, len(o.times), 9, "slots are reused, not appended for ever")
	for k, i := range o.slot {
		if assert.Contains(t, want, k) {
			assert.Equal(t, want[k].UnixNano(), o.times[i], k)
		}
	}

	// Years outside what int64 nanoseconds hold are clamped, not wrapped:
	// they still compare in order with every time inside.
	o = newOrderTracker(8)
	o.advance("far", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	_, behind = o.behind("far", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	assert.True(t, behind)
	o.advance("early", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	_, behind = o.behind("early", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC))
	assert.True(t, behind)
}

// A key taken from a message's headers shares their memory: the tracker
// must keep its own copy, or every key would keep its latest message alive.
func TestOrderTrackerKeepsNoMessageMemory(t *testing.T) {
	o := newOrderTracker(1024)
	freed := make(chan struct{})
	func() {
		headers := make([]byte, 64<<10) // one message's header block
		copy(headers, "XNAS.AAPL")
		runtime.AddCleanup(&headers[0], func(struct{}) { close(freed) }, struct{}{})
		key := unsafe.String(&headers[0], len("XNAS.AAPL"))
		o.advance(key, time.Unix(1, 0)) // new key
		o.advance(key, time.Unix(2, 0)) // existing key, newer time
	}()
	for range 50 {
		runtime.GC()
		select {
		case <-freed:
			_, behind := o.behind("XNAS.AAPL", time.Unix(1, 0))
			assert.True(t, behind, "the copy still answers")
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("the tracker still holds the header block a key was cut from")
}
