package busctl

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// settleRun is one route consumed as a member of a group.
type settleRun struct {
	route   *ampybus.AnyRoute
	pattern string
	group   string
}

// settleRuns finds what consume --settle subscribes to: a concrete topic
// (its route, that subtopic), or a whole domain (prefix.>: every typed
// route, each its own group when there are several, group.subtopic, as the
// contract names them).
func settleRuns(subject, group string) ([]settleRun, string, error) {
	if !strings.ContainsAny(subject, "*>") {
		tp, err := typed(subject)
		if err != nil {
			return nil, "", err
		}
		return []settleRun{{tp.Route, tp.Subtopic, group}}, tp.Env, nil
	}
	sub, err := catalog.ResolveSubject(subject)
	if err != nil {
		return nil, "", err
	}
	if len(sub.Domains) != 1 || subject != sub.Domains[0].Prefix(sub.Env)+".>" {
		return nil, "", usagef("--settle consumes a concrete topic or a whole domain (e.g. ampy.prod.orders.v1.>), not %s", subject)
	}
	routes := catalog.Routes(sub.Domains[0])
	if len(routes) == 0 {
		return nil, "", usagef("--settle: %s holds other topics' messages; read it with dlq-inspect", subject)
	}
	var runs []settleRun
	for _, r := range routes {
		g := group
		if len(routes) > 1 {
			g = group + "." + r.Spec.Name
		}
		runs = append(runs, settleRun{r, r.Spec.Shape(), g})
	}
	return runs, sub.Env, nil
}

// settle consumes as a member of a group through the consumer engine, as a
// service would: each message is checked, acknowledged, and a poison one is
// dead-lettered with its reason. It stops after max messages settled, or
// after idle with nothing to settle.
func settle(ctx context.Context, e *env, c *conn, subject, group string, maxN int, idle time.Duration, decode bool) error {
	runs, envName, err := settleRuns(subject, group)
	if err != nil {
		return err
	}
	b, err := c.open(ctx, envName)
	if err != nil {
		return err
	}
	defer b.Close()
	c.note(b)
	var mu sync.Mutex
	handle := func(_ context.Context, m *ampybus.AnyMessage) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(e.stdout, "settled %s  partition_key %s  message_id %s  attempt %d\n", m.Topic, m.Headers.PartitionKey, m.Headers.MessageID, m.Attempt)
		if decode {
			js, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m.Payload)
			if err == nil {
				fmt.Fprintf(e.stdout, "%s\n", js)
			}
		}
		return nil
	}
	var subs []*ampybus.Subscription
	for _, r := range runs {
		s, err := r.route.Subscribe(ctx, b, r.pattern, handle, ampybus.Durable(r.group), ampybus.DeliverAll())
		if err != nil {
			for _, s := range subs {
				_ = s.Stop()
			}
			return err
		}
		subs = append(subs, s)
		fmt.Fprintf(e.stderr, "consuming %s.%s as group %s\n", r.route.Spec.Domain.Prefix(envName), r.pattern, r.group)
	}
	total := func() (ampybus.Stats, uint64) {
		var sum ampybus.Stats
		for _, s := range subs {
			st := s.Stats()
			sum.Handled += st.Handled
			sum.DeadLettered += st.DeadLettered
			sum.Duplicates += st.Duplicates
			sum.Stale += st.Stale
			sum.Expired += st.Expired
			sum.Retried += st.Retried
		}
		settled := sum.Handled + sum.DeadLettered + sum.Duplicates + sum.Stale
		if sum.Expired > 0 && !runs[0].route.Spec.Domain.FlagExpired {
			settled += sum.Expired
		}
		return sum, settled
	}
	last, lastChange := uint64(0), time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, n := total()
		if n != last {
			last, lastChange = n, time.Now()
		}
		if n >= uint64(maxN) || time.Since(lastChange) >= idle {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	for _, s := range subs {
		_ = s.Stop()
	}
	st, n := total()
	fmt.Fprintf(e.stderr, "settled %d message(s) as group %s: %d handled, %d dead-lettered, %d duplicate, %d stale, %d expired, %d retried\n",
		n, group, st.Handled, st.DeadLettered, st.Duplicates, st.Stale, st.Expired, st.Retried)
	return nil
}
