package kafkabinding

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// delivery is one record handed to the engine; settling it advances its
// partition's committable offset over every settled record at the head.
type delivery struct {
	c       *consumer
	rec     *kgo.Record
	part    *partition
	msg     transport.Message
	herr    error
	attempt int
	settled bool
	// started: the engine asked Revoked before starting its handler and
	// was told no.
	started bool
}

// settle marks d done and advances its partition's committable offset over
// every settled record at the head.
func (d *delivery) settle() {
	c := d.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.settled {
		return
	}
	d.settled = true
	p := d.part
	if c.parts[d.rec.Partition] != p {
		return // the partition was revoked; its new owner will see the record again
	}
	i := 0
	for i < len(p.pending) && p.pending[i].settled {
		p.commit = positionOf(p.pending[i].rec)
		p.dirty = true
		p.pending[i] = nil
		i++
	}
	p.pending = p.pending[i:]
	if len(p.pending) == 0 && p.latest.seen && p.latest.offset > p.commit.offset {
		p.commit = p.latest // records passed over after the last pending one
	}
}

// leaving reports whether d's partition is gone or being revoked.
func (c *consumer) leaving(d *delivery) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parts[d.rec.Partition] != d.part || d.part.revoking
}

// owned reports whether d's partition still belongs to this member.
func (c *consumer) owned(d *delivery) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parts[d.rec.Partition] == d.part
}

// Revoked implements transport.Revocable: the record's partition moved (or
// is moving) to another member, which reads it again from the last commit.
// The engine asks just before it starts the handler; a delivery it was told
// it may start is waited for when its partition is revoked.
func (d *delivery) Revoked() bool {
	c := d.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parts[d.rec.Partition] != d.part || d.part.revoking {
		return true
	}
	d.started = true
	return false
}

func (d *delivery) Message() *transport.Message { return &d.msg }
func (d *delivery) HeaderErr() error            { return d.herr }
func (d *delivery) Attempt() int                { return d.attempt }
func (d *delivery) Sequence() uint64            { return uint64(d.rec.Offset) }
func (d *delivery) Partition() int32            { return d.rec.Partition }

// Ack implements transport.Delivery.
func (d *delivery) Ack(context.Context) error {
	d.settle()
	d.c.release()
	return nil
}

// Term implements transport.Delivery: on Kafka the record is simply passed over.
func (d *delivery) Term(context.Context, string) error { return d.Ack(context.Background()) }

// InProgress implements transport.Delivery; a Kafka record has no ack
// deadline, so there is nothing to extend.
func (d *delivery) InProgress(context.Context) error { return nil }

// Nak implements transport.Delivery by retrying in place: the same record
// is handed out again after delay, and its partition commits nothing past it.
func (d *delivery) Nak(_ context.Context, delay time.Duration) error {
	c := d.c
	d.attempt++
	time.AfterFunc(delay, func() {
		if c.leaving(d) {
			c.release() // revoked meanwhile: the new owner has it
			return
		}
		select {
		case c.out <- d:
		case <-c.closed:
		}
	})
	return nil
}
