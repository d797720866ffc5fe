package goemit

import (
	"time"

	"github.com/dave/jennifer/jen"

	"github.com/ampyfin/ampy-bus/gen/contract"
)

// The domain's DomainSpec: the contract's rules for one domain, as Go values
// the runtime reads.

func (e *emitter) domainSpec() {
	d, f := e.d, e.f
	f.Line()
	f.Const().Defs(
		jen.Comment("DomainName is the domain's name in topics and in the contract."),
		jen.Id("DomainName").Op("=").Lit(d.Name),
		jen.Comment("Version is the domain's major version, the topic's version token."),
		jen.Id("Version").Op("=").Lit(d.Version),
	)
	f.Line()
	f.Commentf("Domain is the %s domain as %s states it; the runtime derives its", d.Name, e.o.Source)
	f.Comment("stream, limits and checks from it.")
	kv := []any{
		"Namespace", jen.Lit(e.c.Namespace),
		"Envs", jen.Index().String().ValuesFunc(func(g *jen.Group) {
			for _, env := range e.c.Envs {
				g.Lit(env)
			}
		}),
		"Name", jen.Id("DomainName"),
		"Version", jen.Id("Version"),
		"QoS", jen.Lit(d.QoS.Name),
		"LatencyP99", duration(d.QoS.LatencyP99),
		"PublishRetry", jen.Qual(runtimePkg, "PublishRetry").Add(fields(
			"Backoff", duration(d.QoS.PublishRetry.Backoff),
			"MaxBackoff", duration(d.QoS.PublishRetry.MaxBackoff),
			"GiveUpAfter", duration(d.QoS.PublishRetry.GiveUpAfter))),
	}
	if d.QoS.MaxLag > 0 {
		kv = append(kv,
			"Priority", jen.Qual(runtimePkg, priorityConst(d.QoS.Priority)),
			"MaxLag", jen.Lit(int(d.QoS.MaxLag)))
		if groups := e.c.ConsumerGroups(d); len(groups) > 0 {
			kv = append(kv, "ConsumerGroups", jen.Index().String().ValuesFunc(func(g *jen.Group) {
				for _, name := range groups {
					g.Lit(name)
				}
			}))
		}
	}
	kv = append(kv, "Ordering", jen.Qual(runtimePkg, orderingConst(d.Ordering.Rule)))
	if d.Ordering.By != "" {
		kv = append(kv, "OrderBy", jen.Lit(d.Ordering.By))
	}
	if d.Ordering.Sequence {
		kv = append(kv, "OrderBySequence", jen.True())
	}
	if d.Ordering.Expires != "" {
		kv = append(kv, "ExpiresBy", jen.Lit(d.Ordering.Expires))
	}
	if d.Ordering.Expired == contract.ExpiredFlag {
		kv = append(kv, "FlagExpired", jen.True())
	}
	if d.Ordering.Restatements {
		kv = append(kv, "Restatements", jen.True())
	}
	kv = append(kv, "Retention", duration(d.Retention))
	if len(d.RetentionByEnv) > 0 {
		kv = append(kv, "RetentionByEnv", jen.Map(jen.String()).Qual("time", "Duration").Values(jen.DictFunc(func(dict jen.Dict) {
			for env, r := range d.RetentionByEnv {
				dict[jen.Lit(env)] = duration(r)
			}
		})))
	}
	kv = append(kv,
		"MaxPayload", size(d.MaxPayload),
		"MaxInflated", size(d.MaxInflated),
		"CompressAbove", size(d.CompressAbove),
		"Partitions", jen.Lit(d.Partitions),
		"Replicas", jen.Lit(d.Replicas),
		"DedupeWindow", duration(d.DedupeWindow),
		"Retry", jen.Qual(runtimePkg, "RetryPolicy").Add(fields(
			"MaxAttempts", jen.Lit(d.Retry.MaxAttempts),
			"Backoff", duration(d.Retry.Backoff),
			"MaxBackoff", duration(d.Retry.MaxBackoff))),
		"Subtopics", jen.Index().String().ValuesFunc(func(g *jen.Group) {
			for _, st := range d.Subtopics {
				g.Lit(st.Pattern.Text)
			}
		}),
	)
	if dlq := e.c.Domain("dlq"); dlq != nil && d.Name != "dlq" {
		path := e.o.ImportPath + "/" + dlq.Package
		e.f.ImportName(path, dlq.Package)
		kv = append(kv, "DeadLetter", jen.Qual(path, "Domain"))
	}
	f.Var().Id("Domain").Op("=").Op("&").Qual(runtimePkg, "DomainSpec").Add(fields(kv...))
}

func priorityConst(p contract.Priority) string {
	return map[contract.Priority]string{
		contract.PriorityCritical: "PriorityCritical", contract.PriorityHigh: "PriorityHigh",
		contract.PriorityNormal: "PriorityNormal", contract.PriorityLow: "PriorityLow",
	}[p]
}

func orderingConst(r contract.OrderingRule) string {
	return map[contract.OrderingRule]string{
		contract.OrderMonotonic: "OrderMonotonic", contract.OrderCausal: "OrderCausal",
		contract.OrderLatestWins: "OrderLatestWins", contract.OrderAccumulate: "OrderAccumulate",
		contract.OrderSnapshot: "OrderSnapshot", contract.OrderCounterGauge: "OrderCounterGauge",
	}[r]
}

// fields renders a composite literal with one key: value per line, in the
// order given (jen.Dict would sort the keys).
func fields(kv ...any) *jen.Statement {
	return jen.ValuesFunc(func(g *jen.Group) {
		for i := 0; i+1 < len(kv); i += 2 {
			g.Line().Id(kv[i].(string)).Op(":").Add(kv[i+1].(jen.Code))
		}
		g.Line()
	})
}

// duration writes d as a readable constant expression: 7 * 24 * time.Hour.
func duration(d time.Duration) jen.Code {
	day := 24 * time.Hour
	for _, u := range []struct {
		unit time.Duration
		expr jen.Code
	}{
		{day, jen.Lit(24).Op("*").Qual("time", "Hour")},
		{time.Hour, jen.Qual("time", "Hour")},
		{time.Minute, jen.Qual("time", "Minute")},
		{time.Second, jen.Qual("time", "Second")},
		{time.Millisecond, jen.Qual("time", "Millisecond")},
	} {
		if d%u.unit == 0 {
			return jen.Lit(int(d / u.unit)).Op("*").Add(u.expr)
		}
	}
	return jen.Lit(int(d))
}

// size writes n as a shift when it is a whole KiB/MiB/GiB: 128 << 10.
func size(n int64) jen.Code {
	for _, s := range []int{30, 20, 10} {
		if n >= 1<<s && n%(1<<s) == 0 {
			return jen.Lit(int(n >> s)).Op("<<").Lit(s)
		}
	}
	return jen.Lit(int(n))
}
