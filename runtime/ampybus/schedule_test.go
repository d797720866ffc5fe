package ampybus

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// keyed is a delivery with only a key, for the scheduler.
type keyed struct {
	transport.Delivery
	msg transport.Message
}

func (k *keyed) Message() *transport.Message { return &k.msg }

func delivery(key string) *keyed {
	d := &keyed{}
	d.msg.Headers.PartitionKey = key
	return d
}

// One key with a standing backlog: messages come out in order, and the
// line's array does not grow with the messages handled.
func TestKeySchedulerBacklogStaysBounded(t *testing.T) {
	s := newKeyScheduler()
	var sent []transport.Delivery
	for range 100 {
		d := delivery("hot")
		sent = append(sent, d)
		s.add(d)
	}
	var l *keyLine
	for i := range 10000 {
		var d transport.Delivery
		var ok bool
		l, d, ok = s.take()
		require.True(t, ok)
		require.Same(t, sent[i], d, "message %d out of order", i)
		next := delivery("hot")
		sent = append(sent, next)
		s.add(next) // the backlog stays at about 100
		assert.Empty(t, s.done(l, false))
	}
	assert.LessOrEqual(t, cap(l.waiting), 512, "the line compacts instead of growing by a slot per message")
	assert.Len(t, s.held(), 100)
}
