package busctl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlv1 "github.com/ampyfin/ampy-bus/proto/ampy/control/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
	"github.com/spf13/pflag"
)

// subjectEnv checks a subject and returns its env.
func subjectEnv(subject string) (string, error) {
	if subject == "" {
		return "", usagef("--subject is required, e.g. --subject 'ampy.dev.bars.v1.>'")
	}
	s, err := catalog.ResolveSubject(subject)
	if err != nil {
		return "", err
	}
	return s.Env, nil
}

// startFlag reads --from: new, first, or an RFC 3339 time.
func startFlag(v string) (transport.StartPosition, error) {
	switch v {
	case "", "new":
		return transport.StartPosition{Kind: transport.StartNew}, nil
	case "first", "all":
		return transport.StartPosition{Kind: transport.StartFirst}, nil
	}
	t, err := envelope.ParseTime(v)
	if err != nil {
		return transport.StartPosition{}, usagef("--from/--since %q: use new, first or an RFC 3339 UTC time: %v", v, err)
	}
	return transport.StartPosition{Kind: transport.StartAtTime, Time: t}, nil
}

func sub(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	subject := fs.String("subject", "", "subject with NATS wildcards, e.g. 'ampy.dev.bars.v1.>'")
	durable := fs.String("durable", "", "consumer group: shares the work with its other members and resumes where it acked")
	// kafkabusctl's names for the same flags.
	fs.StringVar(subject, "topic", "", "same as --subject (kafkabusctl's name)")
	fs.StringVar(durable, "group", "", "same as --durable (kafkabusctl's name)")
	maxN := fs.Int("max", 0, "stop after this many messages; 0 = until Ctrl-C")
	from := fs.String("from", "new", "where a new subscription starts: new, first, or an RFC 3339 time")
	asJSON := fs.Bool("json", false, "one JSON object per message")
	raw := fs.Bool("raw", false, "headers only, without the decoded payload")
	metrics := e.metricsFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := metrics.start(); err != nil {
			return err
		}
		defer metrics.close()
		if strings.HasSuffix(*subject, ".*") && strings.Count(*subject, ".") < 5 {
			fmt.Fprintf(e.stderr, "hint: * matches one token; %s> matches everything below\n", strings.TrimSuffix(*subject, "*"))
		}
		envName, err := subjectEnv(*subject)
		if err != nil {
			return err
		}
		start, err := startFlag(*from)
		if err != nil {
			return err
		}
		b, err := c.open(ctx, envName, metrics.hooks()...)
		if err != nil {
			return err
		}
		defer b.Close()
		tap, err := ampybus.OpenTap(ctx, b, catalog, *subject, ampybus.TapOptions{Group: *durable, Start: start})
		if err != nil {
			return err
		}
		defer tap.Close()
		if !*asJSON {
			fmt.Fprintf(e.stderr, "listening on %s via %s (%s)%s; Ctrl-C to stop\n", *subject, redactURL(b.URL()), b.Transport().Name(), groupNote(*durable))
		}
		p := &printer{w: e.stdout, json: *asJSON, decode: !*raw}
		for n := 0; *maxN == 0 || n < *maxN; n++ {
			in, err := tap.Next(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil // Ctrl-C
				}
				return err
			}
			if err := p.message(in); err != nil {
				return err
			}
			// sub observes: it reports a poison message but leaves dead-lettering
			// to the services that consume it.
			if err := in.Ack(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

func groupNote(g string) string {
	if g == "" {
		return ""
	}
	return ", group " + g
}

func consume(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	topic := fs.String("topic", "", "topic to read (a concrete topic, or a subject with wildcards)")
	subject := fs.String("subject", "", "subject with wildcards; same as --topic")
	maxN := fs.Int("max", 10, "stop after this many messages")
	decode := fs.Bool("decode", false, "print the decoded payload")
	group := fs.String("group", "", "consumer group: commit what was read, so the next run continues")
	asJSON := fs.Bool("json", false, "one JSON object per message")
	settleFlag := fs.Bool("settle", false, "consume as a member of --group through the consumer engine, as a service does: acknowledge, retry, and dead-letter poison with its reason")
	idle := fs.Duration("idle", 5*time.Second, "with --settle, stop after this long with nothing to settle")
	return func(ctx context.Context, args []string) error {
		s := cmp.Or(*subject, *topic)
		if s == "" {
			return usagef("--topic or --subject is required")
		}
		if *settleFlag {
			if *group == "" {
				return usagef("--settle needs --group: the consumer group it joins")
			}
			if *maxN <= 0 || *idle <= 0 {
				return usagef("--max and --idle must be positive")
			}
			return settle(ctx, e, c, s, *group, *maxN, *idle, *decode)
		}
		if !strings.ContainsAny(s, "*>") {
			if _, err := catalog.Resolve(s); err != nil {
				return err
			}
		}
		envName, err := subjectEnv(s)
		if err != nil {
			return err
		}
		b, err := c.open(ctx, envName)
		if err != nil {
			return err
		}
		defer b.Close()
		tap, err := ampybus.OpenTap(ctx, b, catalog, s, ampybus.TapOptions{Group: *group, Start: transport.StartPosition{Kind: transport.StartFirst}, Bounded: true})
		if err != nil {
			return err
		}
		defer tap.Close()
		p := &printer{w: e.stdout, json: *asJSON, decode: *decode}
		n, problems := 0, 0
		for ; n < *maxN; n++ {
			in, err := tap.Next(ctx)
			if errors.Is(err, transport.ErrEndOfStream) {
				break
			}
			if err != nil {
				return err
			}
			if in.Problem != "" {
				problems++
			}
			if err := p.message(in); err != nil {
				return err
			}
			if *group != "" {
				if err := in.Ack(ctx); err != nil {
					return err
				}
			}
		}
		if !*asJSON {
			fmt.Fprintf(e.stderr, "read %d message(s) from %s, %d breaking the contract\n", n, s, problems)
		}
		return nil
	}
}

func dlqInspect(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	subject := fs.String("subject", "", "dead-letter subject, e.g. 'ampy.prod.dlq.v1.>' or ampy.prod.dlq.v1.bars")
	maxN := fs.Int("max", 50, "show at most this many")
	decode := fs.Bool("decode", false, "decode each payload against its original topic")
	outdir := fs.String("outdir", "", "write each dead letter there as a fixture (.json) and its bytes (.bin)")
	since := fs.String("since", "", "only dead letters stored at or after this RFC 3339 time")
	asJSON := fs.Bool("json", false, "one JSON object per dead letter")
	return func(ctx context.Context, args []string) error {
		envName, start, err := dlqRead(*subject, *since)
		if err != nil {
			return err
		}
		if *outdir != "" {
			if err := os.MkdirAll(*outdir, 0o755); err != nil {
				return err
			}
		}
		b, err := c.open(ctx, envName)
		if err != nil {
			return err
		}
		defer b.Close()
		tap, err := ampybus.OpenTap(ctx, b, catalog, *subject, ampybus.TapOptions{Start: start, Bounded: true})
		if err != nil {
			return err
		}
		defer tap.Close()
		p := &printer{w: e.stdout, json: *asJSON, decode: *decode}
		reasons := map[string]int{}
		n := 0
		for ; n < *maxN; n++ {
			in, err := tap.Next(ctx)
			if errors.Is(err, transport.ErrEndOfStream) {
				break
			}
			if err != nil {
				return err
			}
			if err := p.message(in); err != nil {
				return err
			}
			reason := in.Message().Headers.DLQReason
			if i := strings.Index(reason, ":"); i > 0 {
				reason = reason[:i]
			}
			reasons[reason]++
			if *outdir != "" {
				path, err := dump(*outdir, in)
				if err != nil {
					return err
				}
				if !*asJSON {
					fmt.Fprintf(e.stdout, "   wrote %s\n", path)
				}
			}
		}
		if !*asJSON {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(reasons)) {
				parts = append(parts, fmt.Sprintf("%s %d", k, reasons[k]))
			}
			fmt.Fprintf(e.stderr, "%d dead letter(s) on %s; by reason: %s\n", n, *subject, cmp.Or(strings.Join(parts, ", "), "none"))
		}
		return nil
	}
}

// dlqRead checks that a subject names dead letters and returns its env and
// where reading starts: the oldest dead letter, or --since.
func dlqRead(subject, since string) (string, transport.StartPosition, error) {
	start := transport.StartPosition{Kind: transport.StartFirst}
	if subject == "" {
		return "", start, usagef("--subject is required, e.g. --subject 'ampy.prod.dlq.v1.>'")
	}
	toks := strings.Split(subject, ".")
	if len(toks) < 3 || toks[2] != "dlq" {
		return "", start, fmt.Errorf("%w: %s is not a dead-letter subject: dead letters live on ampy.{env}.dlq.v1.{domain}, e.g. ampy.prod.dlq.v1.>", ampybus.ErrContract, subject)
	}
	envName, err := subjectEnv(subject)
	if err != nil || since == "" {
		return envName, start, err
	}
	start, err = startFlag(since)
	return envName, start, err
}

func dlqRedrive(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	subject := fs.String("subject", "", "dead-letter subject, e.g. 'ampy.prod.dlq.v1.>'")
	maxN := fs.Int("max", 100, "redrive at most this many")
	durable := fs.String("durable", "ampybusctl-redrive", "consumer group that remembers what was redriven, so a rerun moves on")
	since := fs.String("since", "", "start a new group at this RFC 3339 time instead of the oldest dead letter")
	dryRun := fs.Bool("dry-run", false, "show what would be redriven and change nothing")
	asJSON := fs.Bool("json", false, "one JSON object per redriven message")
	metrics := e.metricsFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := metrics.start(); err != nil {
			return err
		}
		defer metrics.close()
		envName, start, err := dlqRead(*subject, *since)
		if err != nil {
			return err
		}
		group := *durable
		if *dryRun {
			group = ""
		}
		b, err := c.open(ctx, envName, metrics.hooks()...)
		if err != nil {
			return err
		}
		defer b.Close()
		tap, err := ampybus.OpenTap(ctx, b, catalog, *subject, ampybus.TapOptions{Group: group, Start: start, Bounded: true})
		if err != nil {
			return err
		}
		defer tap.Close()
		prog := &progress{w: e.stderr, on: e.tty}
		n := 0
		for ; n < *maxN; n++ {
			in, err := tap.Next(ctx)
			if errors.Is(err, transport.ErrEndOfStream) {
				break
			}
			if err != nil {
				return err
			}
			orig := in.Original
			if *dryRun {
				fmt.Fprintf(e.stdout, "would redrive %s seq %d → %s  message_id %s  reason %s\n", in.Topic, in.Sequence(), orig, in.Message().Headers.MessageID, in.Message().Headers.DLQReason)
				continue
			}
			res, err := ampybus.Redrive(ctx, b, catalog, in)
			if err != nil {
				return fmt.Errorf("after %d redriven: %w", n, err)
			}
			if err := in.Ack(ctx); err != nil {
				return fmt.Errorf("redrove %s seq %d but could not ack it (a rerun redrives it again; consumers drop the copy by message_id): %w", in.Topic, in.Sequence(), err)
			}
			if *asJSON {
				fmt.Fprintf(e.stdout, `{"dlq_topic":%q,"dlq_sequence":%d,"topic":%q,"sequence":%d,"message_id":%q,"duplicate":%t}`+"\n",
					in.Topic, in.Sequence(), res.Topic, res.Sequence, res.MessageID, res.Duplicate)
			} else {
				fmt.Fprintf(e.stdout, "redriven %s seq %d → %s seq %d  message_id %s\n", in.Topic, in.Sequence(), res.Topic, res.Sequence, res.MessageID)
			}
			prog.update("dlq-redrive: %d redriven", n+1)
		}
		prog.done()
		verb := "redriven"
		if *dryRun {
			verb = "would be redriven (dry run)"
		}
		fmt.Fprintf(e.stderr, "%d dead letter(s) %s from %s\n", n, verb, *subject)
		return nil
	}
}

func replay(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, true)
	envName := fs.String("env", "", "environment, with --domain (default: the context's env)")
	domain := fs.String("domain", "", "domain, e.g. bars")
	version := fs.String("version", "", "domain version, e.g. v1 (default: the contract's)")
	subtopic := fs.String("subtopic", "", "subtopic or subtopic pattern, e.g. XNAS.AAPL or trade.*")
	subject := fs.String("subject", "", "full subject instead of --env/--domain/--subtopic, e.g. 'ampy.prod.ticks.v1.trade.>'")
	startS := fs.String("start", "", "window start, RFC 3339 UTC, inclusive")
	endS := fs.String("end", "", "window end, RFC 3339 UTC, exclusive")
	reason := fs.String("reason", "", "why: lands in the request and the audit trail")
	key := fs.String("key", "", "replay one partition key only")
	dryRun := fs.Bool("dry-run", false, "count the window but post no request")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, args []string) error {
		if *reason == "" {
			return usagef("--reason is required: say why, for the audit trail")
		}
		s := *subject
		if s == "" {
			*envName = cmp.Or(*envName, e.contextEnv())
			if *envName == "" || *domain == "" {
				return usagef("give --subject, or --env and --domain (with --version and --subtopic to narrow)")
			}
			d, err := catalog.Domain(*domain)
			if *version != "" {
				d, err = catalog.DomainVersion(*domain, *version)
			}
			if err != nil {
				return err
			}
			v := d.Version
			s = strings.Join([]string{d.Namespace, *envName, d.Name, v, cmp.Or(*subtopic, ">")}, ".")
		} else if *envName != "" || *domain != "" || *version != "" || *subtopic != "" {
			return usagef("--subject replaces --env, --domain, --version and --subtopic; give one form")
		}
		sj, err := catalog.ResolveSubject(s)
		if err != nil {
			return err
		}
		if len(sj.Domains) != 1 {
			return fmt.Errorf("%w: %s spans %d domains; a replay request names one domain", ampybus.ErrContract, s, len(sj.Domains))
		}
		d := sj.Domains[0]
		if d.Name == "dlq" || d.Name == "control" {
			return fmt.Errorf("%w: %s is not replayable; use dlq-redrive for dead letters", ampybus.ErrContract, s)
		}
		var start, end time.Time
		if *startS != "" {
			if start, err = envelope.ParseTime(*startS); err != nil {
				return usagef("--start %q: %v", *startS, err)
			}
		}
		if *endS != "" {
			if end, err = envelope.ParseTime(*endS); err != nil {
				return usagef("--end %q: %v", *endS, err)
			}
		}
		if start.IsZero() || end.IsZero() {
			return usagef("--start and --end are required")
		}
		if !start.Before(end) {
			return usagef("--start %s is not before --end %s", *startS, *endS)
		}
		b, err := c.open(ctx, sj.Env)
		if err != nil {
			return err
		}
		defer b.Close()
		c.note(b)

		// Count what the window holds, so the operator sees what consumers will reprocess.
		tap, err := ampybus.OpenTap(ctx, b, catalog, s, ampybus.TapOptions{Start: transport.StartPosition{Kind: transport.StartAtTime, Time: start}, Bounded: true, Until: end, Key: *key})
		if err != nil {
			return err
		}
		prog := &progress{w: e.stderr, on: e.tty}
		count, keys := 0, map[string]bool{}
		for {
			in, err := tap.Next(ctx)
			if errors.Is(err, transport.ErrEndOfStream) {
				break
			}
			if err != nil {
				tap.Close()
				return err
			}
			count++
			keys[in.Message().Headers.PartitionKey] = true
			_ = in.Ack(ctx)
			prog.update("replay: counting the window: %d messages", count)
		}
		tap.Close()
		prog.done()

		req := &controlv1.ReplayRequest{
			RequestId: "rr_" + strings.ReplaceAll(envelope.NewMessageID(), "-", "")[:20], Env: sj.Env, Domain: d.Name, Version: d.Version,
			Subject: s, PartitionKey: *key, Start: timestamppb.New(start), End: timestamppb.New(end), Reason: *reason,
			RequestedAt: timestamppb.Now(),
		}
		req.RequestedBy, _, _ = b.Identity()
		var res ampybus.PublishResult
		if !*dryRun {
			if res, err = postReplay(ctx, b, sj.Env, req); err != nil {
				return err
			}
		}
		if *asJSON {
			fmt.Fprintf(e.stdout, `{"request_id":%q,"subject":%q,"start":%q,"end":%q,"messages":%d,"keys":%d,"posted":%t,"control_topic":%q,"sequence":%d}`+"\n",
				req.RequestId, s, *startS, *endS, count, len(keys), !*dryRun, res.Topic, res.Sequence)
			return nil
		}
		fmt.Fprintf(e.stdout, "window %s [%s, %s) holds %d message(s) on %d key(s)\n", s, envelope.FormatTime(start), envelope.FormatTime(end), count, len(keys))
		if *dryRun {
			fmt.Fprintln(e.stdout, "dry run: no replay request posted")
			return nil
		}
		fmt.Fprintf(e.stdout, "posted replay request %s to %s seq %d; consumers serving replays reprocess the window idempotently\n", req.RequestId, res.Topic, res.Sequence)
		return nil
	}
}

// postReplay publishes a replay request on the contract's control subtopic
// that carries ampy.control.v1.ReplayRequest, whichever contract the CLI
// serves.
func postReplay(ctx context.Context, b *ampybus.Bus, env string, req *controlv1.ReplayRequest) (ampybus.PublishResult, error) {
	fqdn := string(req.ProtoReflect().Descriptor().FullName())
	for _, d := range catalog.Domains() {
		for _, r := range catalog.Routes(d) {
			if r.Spec.Schema.FQDN != fqdn || strings.Contains(r.Spec.Pattern, "{") {
				continue
			}
			p := r.NewPayload()
			data, err := proto.Marshal(req)
			if err != nil {
				return ampybus.PublishResult{}, err
			}
			if err := proto.Unmarshal(data, p); err != nil {
				return ampybus.PublishResult{}, err
			}
			return r.Publish(ctx, b, r.Spec.Pattern, p)
		}
	}
	return ampybus.PublishResult{}, fmt.Errorf("%w: the contract has no control subtopic carrying %s, so the request cannot be posted (--dry-run counts the window only)", ampybus.ErrContract, fqdn)
}
