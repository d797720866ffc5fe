package goemit

import (
	"github.com/dave/jennifer/jen"

	"github.com/ampyfin/ampy-bus/gen/contract"
)

// The typed API of one subtopic: its route, publisher and consumer, and the
// replay server and state of the world where the contract asks for them.

// replayControl finds the contract's control subtopic carrying
// ampy.control.v1.ReplayRequest, if any.
func (e *emitter) replayControl() (*contract.Domain, *contract.Subtopic) {
	for _, d := range e.c.Domains {
		for _, s := range d.Subtopics {
			if s.Payload != nil && s.Payload.FullName() == "ampy.control.v1.ReplayRequest" {
				return d, s
			}
		}
	}
	return nil, nil
}

// replayServer emits Serve<V>Replays: a control-topic subscriber that replays
// each matching ReplayRequest through the service's handler.
func (e *emitter) replayServer(s *contract.Subtopic, n names, payload jen.Code) {
	cd, cs := e.replayControl()
	if cd == nil || cd == e.d {
		return
	}
	ctl := e.o.ImportPath + "/" + cd.Package
	e.f.ImportName(ctl, cd.Package)
	cn := subtopicNames(cs)
	name := "Serve" + n.V + "Replays"
	f := e.f
	f.Line()
	f.Commentf("%s replays, through h, each ReplayRequest posted on %s.{env}.%s.%s.%s", name, e.c.Namespace, cd.Name, cd.Version, cs.Pattern.Text)
	f.Commentf("that concerns %s messages matching pattern, until ctx ends. Pass the live", n.Payload)
	f.Comment("subscription's options (its ampybus.Durable group and ampybus.Dedupe store) so a")
	f.Comment("replay applies only what is missing; each group serves each request once.")
	f.Func().Id(name).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern),
		jen.Id("h").Id(n.Handler), jen.Id("opts").Op("...").Qual(runtimePkg, "SubscribeOption"),
	).Params(jen.Op("*").Qual(runtimePkg, "Subscription"), jen.Error()).Block(
		jen.Return(jen.Qual(ctl, cn.Subscribe).Call(jen.Id("ctx"), jen.Id("b"), jen.Qual(ctl, cn.All).Call(),
			jen.Func().Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("m").Op("*").Qual(ctl, cn.Message)).Error().Block(
				jen.List(jen.Id("w"), jen.Id("ok")).Op(":=").Qual(runtimePkg, "ReplayFor").Call(jen.Id("b"), jen.Id(n.Spec), jen.Id("m").Dot("Payload")),
				jen.If(jen.Op("!").Id("ok")).Block(jen.Return(jen.Nil())),
				jen.List(jen.Id("_"), jen.Err()).Op(":=").Id(n.Replay).Call(jen.Id("ctx"), jen.Id("b"), jen.Id("pattern"), jen.Id("w"), jen.Id("h"), jen.Id("opts").Op("...")),
				jen.Return(jen.Err()),
			),
			jen.Qual(runtimePkg, "ReplayServerOptions").Call(jen.Id("opts").Op("...")).Op("..."))))
}

// stateOfTheWorld emits Snapshot<V> and SnapshotThenSubscribe<V> for the
// domains whose ordering rule makes "the latest value per key" meaningful.
func (e *emitter) stateOfTheWorld(s *contract.Subtopic, n names, where string, payload jen.Code) {
	if r := e.d.Ordering.Rule; r != contract.OrderLatestWins && r != contract.OrderSnapshot {
		return
	}
	f := e.f
	f.Line()
	f.Commentf("Snapshot%s returns the latest %s for one partition key on %s,", n.V, n.Payload, where)
	f.Commentf("the newest by %s, from what the stream holds now.", e.d.Ordering.By)
	f.Func().Id("Snapshot"+n.V).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern), jen.Id("key").String(),
	).Params(jen.Op("*").Id(n.Message), jen.Bool(), jen.Error()).Block(
		jen.Return(jen.Qual(runtimePkg, "Snapshot").Call(jen.Id("ctx"), jen.Id("b"), jen.Id(n.Route), jen.Id("pattern").Dot("String").Call(), jen.Id("key"))))
	f.Line()
	f.Commentf("SnapshotThenSubscribe%s calls h with the latest %s of every key (Snapshot", n.V, n.Payload)
	f.Comment("set), then with every message that follows, live: nothing is missed and nothing")
	f.Comment("repeated between the two.")
	f.Func().Id("SnapshotThenSubscribe"+n.V).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern),
		jen.Id("h").Id(n.Handler), jen.Id("opts").Op("...").Qual(runtimePkg, "SubscribeOption"),
	).Params(jen.Op("*").Qual(runtimePkg, "Subscription"), jen.Error()).Block(
		jen.Return(jen.Qual(runtimePkg, "SnapshotThenSubscribe").Call(jen.Id("ctx"), jen.Id("b"), jen.Id(n.Route), jen.Id("pattern").Dot("String").Call(),
			jen.Qual(runtimePkg, "Handler").Types(jen.Id(n.Subtopic), payload).Call(jen.Id("h")), jen.Id("opts").Op("..."))))
}

// route emits the value that ties the subtopic's types to the runtime.
func (e *emitter) route(s *contract.Subtopic, n names, payload jen.Code) {
	kv := []any{"Spec", jen.Id(n.Spec), "Parse", jen.Id(n.Parse), "Keys", jen.Id(n.Keys)}
	if len(s.OrderBy.Fields) > 0 {
		kv = append(kv, "OrderTime", jen.Id(n.OrderTime))
	}
	if len(s.ExpiresAt.Fields) > 0 {
		kv = append(kv, "ExpiresAt", jen.Id(n.ExpiresAt))
	}
	if check := e.utf8Check(s.Payload); check != "" {
		kv = append(kv, "CheckUTF8", jen.Id(check))
	}
	e.f.Line()
	e.f.Commentf("%s ties the %s types to the runtime for publishers and consumers.", n.Route, n.Payload)
	e.f.Var().Id(n.Route).Op("=").Op("&").Qual(runtimePkg, "Route").Types(jen.Id(n.Subtopic), payload).Add(fields(kv...))
}

// orderTimeFunc emits the function reading the payload time the domain's
// ordering rule compares; through repeated fields it takes the newest.
func (e *emitter) orderTimeFunc(s *contract.Subtopic, n names, payload jen.Code) {
	fp := s.OrderBy
	if len(fp.Fields) == 0 {
		return
	}
	e.f.Line()
	if contract.IsSequence(fp.Fields[len(fp.Fields)-1]) {
		e.f.Commentf("%s places the %s sequence the contract orders %s messages by on the", n.OrderTime, fp.Text, n.Payload)
		e.f.Comment("ordering axis (the highest, across repeated fields); zero when the payload has none.")
	} else {
		e.f.Commentf("%s is the %s the contract orders %s messages by (the newest, across", n.OrderTime, fp.Text, n.Payload)
		e.f.Comment("repeated fields); zero when the payload has none.")
	}
	e.f.Func().Id(n.OrderTime).Params(jen.Id("m").Add(payload)).Qual("time", "Time").BlockFunc(func(g *jen.Group) {
		g.Var().Id("newest").Qual("time", "Time")
		seq := contract.IsSequence(fp.Fields[len(fp.Fields)-1])
		e.each(g, jen.Id("m"), s.Payload, fp.Fields, false, func(g *jen.Group, v *jen.Statement, _ string, _ []jen.Code) {
			if seq {
				// A sequence number on the ordering axis; 0 is none.
				g.If(jen.Id("seq").Op(":=").Add(v), jen.Id("seq").Op("!=").Lit(0).Op("&&").Qual(runtimePkg, "SequenceTime").Call(jen.Int64().Call(jen.Id("seq"))).Dot("After").Call(jen.Id("newest"))).Block(
					jen.Id("newest").Op("=").Qual(runtimePkg, "SequenceTime").Call(jen.Int64().Call(jen.Id("seq"))))
				return
			}
			g.If(jen.Id("ts").Op(":=").Add(v), jen.Id("ts").Op("!=").Nil().Op("&&").Id("ts").Dot("AsTime").Call().Dot("After").Call(jen.Id("newest"))).Block(
				jen.Id("newest").Op("=").Id("ts").Dot("AsTime").Call())
		})
		g.Return(jen.Id("newest"))
	})
}

// expiresAtFunc emits the function reading the time after which a message
// is no longer current.
func (e *emitter) expiresAtFunc(s *contract.Subtopic, n names, payload jen.Code) {
	fp := s.ExpiresAt
	if len(fp.Fields) == 0 {
		return
	}
	e.f.Line()
	e.f.Commentf("%s is the %s after which a %s is no longer current; zero when it has", n.ExpiresAt, fp.Text, n.Payload)
	e.f.Comment("none, and then it does not expire.")
	e.f.Func().Id(n.ExpiresAt).Params(jen.Id("m").Add(payload)).Qual("time", "Time").Block(
		jen.If(jen.Id("ts").Op(":=").Add(e.fieldExpr("m", s.Payload, fp)), jen.Id("ts").Op("!=").Nil()).Block(
			jen.Return(jen.Id("ts").Dot("AsTime").Call())),
		jen.Return(jen.Qual("time", "Time").Values()))
}

func (e *emitter) publisher(s *contract.Subtopic, n names, where string, payload jen.Code) {
	f := e.f
	gen := jen.Qual(runtimePkg, "Publisher").Types(jen.Id(n.Subtopic), payload)
	f.Line()
	f.Commentf("%s publishes %s messages to %s.", n.Publisher, n.Payload, where)
	f.Comment("The envelope, topic and keys come from the contract; the caller supplies only the")
	f.Comment("subtopic and payload. It is safe for concurrent use.")
	f.Type().Id(n.Publisher).Struct(jen.Id("pub").Op("*").Add(gen))
	f.Line()
	f.Commentf("%s returns a publisher on b; b must carry a producer identity.", n.NewPublisher)
	f.Func().Id(n.NewPublisher).Params(jen.Id("b").Op("*").Qual(runtimePkg, "Bus")).Op("*").Id(n.Publisher).Block(
		jen.Return(jen.Op("&").Id(n.Publisher).Values(jen.Id("pub").Op(":").Qual(runtimePkg, "NewPublisher").Call(jen.Id("b"), jen.Id(n.Route)))))
	keyDoc := "partition_key " + s.PartitionKey.Text
	if s.DedupeKey != nil {
		keyDoc += " and dedupe_key " + s.DedupeKey.Text
	}
	params := []jen.Code{
		jen.Id("ctx").Qual("context", "Context"), jen.Id("subtopic").Id(n.Subtopic), jen.Id("msg").Add(payload),
		jen.Id("opts").Op("...").Qual(runtimePkg, "PublishOption"),
	}
	f.Line()
	f.Commentf("Publish sends msg with %s and waits until the broker", keyDoc)
	f.Comment("has stored it. A payload that breaks the contract fails with ampybus.ErrContract")
	f.Comment("and nothing is published.")
	f.Func().Params(jen.Id("p").Op("*").Id(n.Publisher)).Id("Publish").Params(params...).Params(jen.Qual(runtimePkg, "PublishResult"), jen.Error()).Block(
		jen.Return(jen.Id("p").Dot("pub").Dot("Publish").Call(jen.Id("ctx"), jen.Id("subtopic"), jen.Id("msg"), jen.Id("opts").Op("..."))))
	f.Line()
	f.Comment("PublishAsync sends msg without waiting for the broker's ack; the future completes")
	f.Comment("when it arrives, and Bus.Flush waits for all of them. It blocks only while the")
	f.Comment("async window is full, bounded by ctx.")
	f.Func().Params(jen.Id("p").Op("*").Id(n.Publisher)).Id("PublishAsync").Params(params...).Params(jen.Op("*").Qual(runtimePkg, "PublishFuture"), jen.Error()).Block(
		jen.Return(jen.Id("p").Dot("pub").Dot("PublishAsync").Call(jen.Id("ctx"), jen.Id("subtopic"), jen.Id("msg"), jen.Id("opts").Op("..."))))
	if q := e.d.QoS; q.MaxLag > 0 && q.Priority != contract.PriorityCritical {
		f.Line()
		f.Comment("BatchSize is how many items to put in the next message when batching: limit, or")
		f.Commentf("a quarter of it while a consumer group of %s is over %d messages behind.", e.d.Name, q.MaxLag)
		f.Func().Params(jen.Id("p").Op("*").Id(n.Publisher)).Id("BatchSize").Params(jen.Id("limit").Int()).Int().Block(
			jen.Return(jen.Id("p").Dot("pub").Dot("BatchSize").Call(jen.Id("limit"))))
	}
}

func (e *emitter) consumer(s *contract.Subtopic, n names, where string, payload jen.Code) {
	f := e.f
	f.Line()
	f.Commentf("%s is a delivered %s with its subtopic and headers.", n.Message, n.Payload)
	f.Type().Id(n.Message).Op("=").Qual(runtimePkg, "Message").Types(jen.Id(n.Subtopic), payload)
	f.Line()
	f.Commentf("%s handles %s messages. Return nil to acknowledge; an error redelivers", n.Handler, n.Payload)
	f.Comment("the message later, and an error wrapping ampybus.ErrPermanent dead-letters it.")
	f.Type().Id(n.Handler).Func().Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("m").Op("*").Id(n.Message)).Error()
	f.Line()
	f.Commentf("%s calls h for every %s message on %s", n.Subscribe, n.Payload, where)
	f.Comment("that matches pattern, until ctx ends or the subscription is stopped. Use")
	f.Comment("ampybus.Durable to share work in a group and resume after a restart.")
	f.Func().Id(n.Subscribe).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern),
		jen.Id("h").Id(n.Handler), jen.Id("opts").Op("...").Qual(runtimePkg, "SubscribeOption"),
	).Params(jen.Op("*").Qual(runtimePkg, "Subscription"), jen.Error()).Block(
		jen.Return(jen.Qual(runtimePkg, "Subscribe").Call(jen.Id("ctx"), jen.Id("b"), jen.Id(n.Route), jen.Id("pattern").Dot("String").Call(),
			jen.Qual(runtimePkg, "Handler").Types(jen.Id(n.Subtopic), payload).Call(jen.Id("h")), jen.Id("opts").Op("..."))))
	f.Line()
	f.Commentf("%s runs h over the %s messages on %s that match", n.Replay, n.Payload, where)
	f.Comment("pattern and fall in the window, then returns what it did. It reads through its")
	f.Comment("own consumer and never moves a live one; pass the live subscription's")
	f.Comment("ampybus.Durable group and ampybus.Dedupe store so effects already applied are")
	f.Comment("not applied twice. Messages carry the window's RequestID as ReplayRequestID.")
	f.Func().Id(n.Replay).Params(
		jen.Id("ctx").Qual("context", "Context"), jen.Id("b").Op("*").Qual(runtimePkg, "Bus"), jen.Id("pattern").Id(n.Pattern),
		jen.Id("window").Qual(runtimePkg, "ReplayWindow"), jen.Id("h").Id(n.Handler), jen.Id("opts").Op("...").Qual(runtimePkg, "SubscribeOption"),
	).Params(jen.Qual(runtimePkg, "Stats"), jen.Error()).Block(
		jen.Return(jen.Qual(runtimePkg, "Replay").Call(jen.Id("ctx"), jen.Id("b"), jen.Id(n.Route), jen.Id("pattern").Dot("String").Call(), jen.Id("window"),
			jen.Qual(runtimePkg, "Handler").Types(jen.Id(n.Subtopic), payload).Call(jen.Id("h")), jen.Id("opts").Op("..."))))
}
