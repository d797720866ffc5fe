package natsbinding

import (
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// pushed settles a message a push consumer delivered by answering on its
// reply subject, the protocol jetstream.Msg speaks for pulled ones. It
// publishes through the connection, not the subscription, so a delivery
// stays settleable after its inbox is unsubscribed (a partition given up or
// taken again).
type pushed struct {
	nc    *nats.Conn
	reply string
}

var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
)

func (p *pushed) Ack() error        { return p.nc.Publish(p.reply, ackAck) }
func (p *pushed) Nak() error        { return p.nc.Publish(p.reply, ackNak) }
func (p *pushed) InProgress() error { return p.nc.Publish(p.reply, ackProgress) }

func (p *pushed) NakWithDelay(d time.Duration) error {
	return p.nc.Publish(p.reply, []byte(`-NAK {"delay": `+strconv.FormatInt(d.Nanoseconds(), 10)+`}`))
}

func (p *pushed) TermWithReason(reason string) error {
	return p.nc.Publish(p.reply, []byte("+TERM "+reason))
}

// pushedDelivery decodes a pushed message; md is its metadata.
func pushedDelivery(nc *nats.Conn, m *nats.Msg, md *nats.MsgMetadata) *delivery {
	d := decode(m.Subject, m.Data, m.Header)
	d.push = pushed{nc: nc, reply: m.Reply}
	d.m = &d.push
	d.attempt = int(md.NumDelivered)
	d.seq = md.Sequence.Stream
	return d
}
