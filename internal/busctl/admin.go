package busctl

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ampyfin/ampy-bus/internal/fixtures"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/fixture"
	"github.com/ampyfin/ampy-bus/runtime/transport"
	"github.com/spf13/pflag"
)

func validateFixture(e *env, fs *pflag.FlagSet) runFunc {
	file := fs.String("file", "", "one fixture file")
	dir := fs.String("dir", "", "a directory of fixtures (*.json, recursively)")
	asJSON := fs.Bool("json", false, "print problems as JSON lines")
	return func(_ context.Context, args []string) error {
		if (*file == "") == (*dir == "") {
			return usagef("give --file or --dir")
		}
		var fxs []*fixture.Fixture
		var loadErr error
		if *file != "" {
			f, err := fixture.Load(*file)
			if err != nil {
				return err
			}
			fxs = []*fixture.Fixture{f}
		} else {
			fxs, loadErr = fixture.LoadDir(*dir)
			if fxs == nil && loadErr != nil {
				return loadErr
			}
		}
		bad := 0
		for _, f := range fxs {
			problems := fixture.Validate(catalog, f)
			if len(problems) > 0 {
				bad++
			}
			for _, p := range problems {
				if *asJSON {
					js, _ := json.Marshal(map[string]string{"file": p.Path, "field": p.Field, "problem": p.Message})
					fmt.Fprintln(e.stdout, string(js))
				} else {
					fmt.Fprintf(e.stdout, "FAIL %s: %s: %s\n", p.Path, p.Field, p.Message)
				}
			}
			if len(problems) == 0 && !*asJSON {
				format := ""
				if f.Upstream {
					format = " (upstream format)"
				}
				fmt.Fprintf(e.stdout, "ok   %s  %s%s\n", f.Path, f.Topic, format)
			}
		}
		if loadErr != nil {
			fmt.Fprintln(e.stderr, loadErr)
			bad++
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d fixture(s) break the contract", bad, len(fxs))
		}
		if !*asJSON {
			fmt.Fprintf(e.stderr, "%d fixture(s) valid\n", len(fxs))
		}
		return nil
	}
}

func fixturesCmd(e *env, fs *pflag.FlagSet) runFunc {
	out := fs.String("out", "fixtures", "directory to write the golden fixtures to")
	check := fs.Bool("check", false, "fail when the fixtures in --out differ from a fresh build")
	return func(_ context.Context, args []string) error {
		if foreign {
			// Another team's contract: one skeleton fixture per typed subtopic.
			payloads, err := fixtures.Skeletons(catalog)
			if err != nil {
				return err
			}
			files, err := fixtures.FilesFor(catalog, payloads)
			if err != nil {
				return err
			}
			if *check {
				if err := fixtures.CheckFiles(*out, files); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "fixtures in %s are current\n", *out)
				return nil
			}
			if err := fixtures.WriteFiles(*out, files); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %d skeleton fixtures to %s\n", len(payloads), *out)
			return nil
		}
		if *check {
			if err := fixtures.Check(*out); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "fixtures in %s are current\n", *out)
			return nil
		}
		if err := fixtures.Write(*out); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %d golden fixtures to %s\n", len(fixtures.Payloads()), *out)
		return nil
	}
}

// domainFlag resolves --topic, or --env with --domain, to a domain and env.
func domainFlag(topic, envName, domain string) (*ampybus.DomainSpec, string, error) {
	switch {
	case topic != "":
		if !strings.ContainsAny(topic, "*>") {
			if tp, err := catalog.Resolve(topic); err == nil {
				return tp.Domain, tp.Env, nil
			} else if len(strings.Split(topic, ".")) > 4 {
				return nil, "", err
			}
		}
		s, err := catalog.ResolveSubject(strings.TrimSuffix(topic, ".>") + ".>")
		if err != nil {
			return nil, "", err
		}
		if len(s.Domains) != 1 {
			return nil, "", fmt.Errorf("%w: %s spans %d domains; name one", ampybus.ErrContract, topic, len(s.Domains))
		}
		return s.Domains[0], s.Env, nil
	case domain != "":
		d, err := catalog.Domain(domain)
		if err != nil {
			return nil, "", err
		}
		return d, cmp.Or(envName, "dev"), nil
	}
	return nil, "", usagef("give --topic (e.g. ampy.dev.bars.v1.XNAS.AAPL or ampy.dev.bars.v1), or --env and --domain")
}

func ensureTopic(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	topic := fs.String("topic", "", "a topic of the domain, or its prefix (ampy.dev.bars.v1)")
	envName := fs.String("env", "", "environment, with --domain or --all (default: the context's env)")
	domain := fs.String("domain", "", "domain name, with --env")
	partitions := fs.Int("partitions", 0, "accepted for the upstream tool's sake; the contract owns partitions, and a different number is noted and ignored")
	all := fs.Bool("all", false, "every domain of the contract in --env")
	return func(ctx context.Context, args []string) error {
		if *all && (*topic != "" || *domain != "" || *partitions != 0) {
			return usagef("--all takes only --env")
		}
		if *topic != "" && (*envName != "" || *domain != "") {
			return usagef("--topic names the env and domain; give --topic, or --env and --domain")
		}
		if *topic == "" {
			*envName = cmp.Or(*envName, e.contextEnv())
		}
		var ds []*ampybus.DomainSpec
		envN := cmp.Or(*envName, "dev")
		if *all {
			ds = catalog.Domains()
		} else {
			d, en, err := domainFlag(*topic, *envName, *domain)
			if err != nil {
				return err
			}
			ds, envN = []*ampybus.DomainSpec{d}, en
			if *partitions != 0 && *partitions != d.Partitions {
				// The upstream tool took partitions on the command line; here the
				// contract owns them, and says so rather than refuse the command.
				fmt.Fprintf(e.stderr, "note: --partitions %d ignored: contract.yaml gives %s %d partitions (change the contract to change them; they can only grow)\n", *partitions, d.Name, d.Partitions)
			}
		}
		b, err := c.open(ctx, envN)
		if err != nil {
			return err
		}
		defer b.Close()
		c.note(b)
		for _, d := range ds {
			if err := b.Ensure(ctx, d); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "ensured %s on %s: %d partition(s), retention %s, max payload %d bytes, dedupe window %s\n",
				d.Prefix(envN), b.Transport().Name(), d.Partitions, d.RetentionIn(envN), d.MaxPayload, d.DedupeWindow)
		}
		return nil
	}
}

func listTopics(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	envName := e.envFlag(fs, "", "only this environment (default: the context's env, else every env of the contract)")
	asJSON := fs.Bool("json", false, "one JSON object per domain and env")
	return func(ctx context.Context, args []string) error {
		envs := catalog.Domains()[0].Envs
		if *envName != "" {
			if !slices.Contains(envs, *envName) {
				return usagef("--env %s is not one of the contract's envs (%s)", *envName, strings.Join(envs, ", "))
			}
			envs = []string{*envName}
		}
		b, err := c.open(ctx, envs[0])
		if err != nil {
			return err
		}
		defer b.Close()
		desc, err := describer(b)
		if err != nil {
			return err
		}
		streams, err := desc.Streams(ctx, catalog.Domains()[0].Namespace)
		if err != nil {
			return err
		}
		byPrefix := map[string]transport.StreamInfo{}
		for _, s := range streams {
			byPrefix[s.Prefix] = s
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		if !*asJSON {
			fmt.Fprintln(tw, "ENV\tTOPIC PREFIX\tON BROKER\tNAME\tMESSAGES\tPARTS\tSUBTOPICS")
		}
		for _, envN := range envs {
			for _, d := range catalog.Domains() {
				prefix := d.Prefix(envN)
				s, ok := byPrefix[prefix]
				delete(byPrefix, prefix)
				var pats []string
				for _, r := range catalog.Routes(d) {
					pats = append(pats, r.Spec.Pattern+" "+r.Spec.Schema.FQDN)
				}
				if len(pats) == 0 {
					pats = []string{"{domain} raw"}
				}
				if *asJSON {
					js, _ := json.Marshal(map[string]any{"env": envN, "prefix": prefix, "exists": ok, "name": s.Name, "messages": s.Messages, "partitions": s.Partitions, "subtopics": pats})
					fmt.Fprintln(e.stdout, string(js))
					continue
				}
				exists, name := "no", "-"
				if ok {
					exists, name = "yes", s.Name
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", envN, prefix, exists, name, s.Messages, s.Partitions, strings.Join(pats, "; "))
			}
		}
		if !*asJSON {
			for _, prefix := range slices.Sorted(maps.Keys(byPrefix)) {
				s := byPrefix[prefix]
				for _, envN := range envs {
					if strings.Contains(prefix, "."+envN+".") {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t(not in the contract)\n", envN, prefix, "yes", s.Name, s.Messages, s.Partitions)
					}
				}
			}
		}
		return tw.Flush()
	}
}

func describeTopic(e *env, fs *pflag.FlagSet) runFunc {
	c := e.connFlags(fs, false)
	topic := fs.String("topic", "", "a topic of the domain, or its prefix (ampy.dev.bars.v1)")
	return func(ctx context.Context, args []string) error {
		d, envN, err := domainFlag(*topic, "", "")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s (domain %s %s, env %s)\n", d.Prefix(envN), d.Name, d.Version, envN)
		// Labels in one column, the broker's line last: it may fail.
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		defer w.Flush()
		fmt.Fprintf(w, "  qos\t%s, p99 %s\n", d.QoS, d.LatencyP99)
		order := string(d.Ordering)
		if d.OrderBy != "" {
			order += " by " + d.OrderBy
		}
		if d.ExpiresBy != "" {
			order += ", expiring at " + d.ExpiresBy
		}
		fmt.Fprintf(w, "  ordering\tper partition key, %s\n", order)
		fmt.Fprintf(w, "  retry\t%d attempts, backoff %s up to %s, then %s\n", d.Retry.MaxAttempts, d.Retry.Backoff, d.Retry.MaxBackoff, ampybus.DeadLetterDomain(d).Prefix(envN)+"."+d.Name)
		fmt.Fprintf(w, "  limits\t%d partitions, %d replica(s), retention %s, max payload %d, gzip above %d, dedupe window %s\n", d.Partitions, max(d.Replicas, 1), d.RetentionIn(envN), d.MaxPayload, d.CompressAbove, d.DedupeWindow)
		pr := d.PublishRetry
		fmt.Fprintf(w, "  publish retry\tbackoff %s up to %s, give up after %s (same message id)\n", pr.Backoff, pr.MaxBackoff, pr.GiveUpAfter)
		for _, r := range catalog.Routes(d) {
			s := r.Spec
			fmt.Fprintf(w, "  subtopic\t%s.%s carries %s %s\n", d.Prefix(envN), s.Pattern, s.Schema.FQDN, s.Schema.Version)
			fmt.Fprintf(w, "\tpartition_key %s", s.PartitionKey)
			if s.DedupeKey != "" {
				fmt.Fprintf(w, ", dedupe_key %s", s.DedupeKey)
			}
			fmt.Fprintf(w, "\n\tschema_hash %s\n", s.Schema.Hash)
		}
		// The contract's part shows while the broker is reached.
		if err := w.Flush(); err != nil {
			return err
		}
		b, err := c.open(ctx, envN)
		if err != nil {
			return err
		}
		defer b.Close()
		desc, err := describer(b)
		if err != nil {
			return err
		}
		info, err := desc.DescribeStream(ctx, d.Prefix(envN))
		if errors.Is(err, transport.ErrNotFound) {
			fmt.Fprintf(w, "  on %s\tnot created yet (ampybusctl ensure-topic --topic %s, or publish to it)\n", b.Transport().Name(), d.Prefix(envN))
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  on %s\t%s: %d message(s), %d partition(s), %d replica(s), range %d..%d, retention %s, max message %d bytes\n",
			b.Transport().Name(), info.Name, info.Messages, info.Partitions, info.Replicas, info.First, info.Last, info.Retention, info.MaxMessageBytes)
		return nil
	}
}
