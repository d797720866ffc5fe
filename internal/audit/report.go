package audit

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText prints the report for people: each order's trail, then each
// position's reconciliation, then the verdict.
func (r *Report) WriteText(w io.Writer) {
	who := "all accounts"
	if r.Account != "" {
		who = "account " + r.Account
	}
	fmt.Fprintf(w, "trading session, env %s, %s, [%s, %s)\n", r.Env, who, r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339))
	line := func(indent string, rec Record) {
		extra := ""
		if rec.RedriveOf != "" {
			extra = "  redriven from " + rec.RedriveOf
		}
		fmt.Fprintf(w, "%s%-8s %s  %-40s %s\n%s         message_id %s  producer %s  trace %s  %s  seq %d%s\n",
			indent, rec.Kind, rec.ProducedAt.UTC().Format("15:04:05.000000"), rec.Summary, rec.Topic,
			indent, rec.MessageID, rec.Producer, rec.TraceID, rec.PayloadSHA256, rec.Sequence, extra)
	}
	for _, o := range r.Orders {
		fmt.Fprintf(w, "\norder %s  account %s  %s  filled %s\n", o.ClientOrderID, o.Account, o.Security, o.Filled)
		for _, s := range o.Signals {
			line("  ", s)
		}
		for _, e := range o.Events {
			line("  ", e)
		}
	}
	fmt.Fprintln(w)
	for _, p := range r.Positions {
		verdict := "consistent"
		if !p.Consistent {
			verdict = "INCONSISTENT"
		}
		fmt.Fprintf(w, "position %s %s: %s before + fills %s = %s after: %s\n", p.Account, p.Security, p.Before, p.Fills, p.After, verdict)
		for _, s := range p.Snapshots {
			line("  ", s)
		}
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(w, "\nproblems:\n  %s\n", strings.Join(r.Problems, "\n  "))
	}
	verdict := "consistent"
	if !r.Consistent {
		verdict = "NOT consistent"
	}
	fmt.Fprintf(w, "\n%d order(s), %d position(s): %s\n", len(r.Orders), len(r.Positions), verdict)
}
