package demo

import (
	"fmt"
	"text/tabwriter"
	"time"

	_ "github.com/ampyfin/ampy-bus/runtime/embedded" // the demo runs on embedded:// by default

	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// What the demo prints at the end, and how it formats prices and durations.

func redriven(h envelope.Headers) string {
	if of := h.Extra[ampybus.HeaderRedriveOf]; of != "" {
		return "redriven from " + of
	}
	return "new order"
}

// summary prints what each domain saw: the table the seed's dashboards show.
func (d *demo) summary(replay ampybus.Stats) error {
	t, err := readTally(d.metrics.Registry)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintln(d.w)
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "domain\tpublished\tconsumed\tretried\tdead-lettered\tdecode-fail\treplayed\tp50 ms\tp99 ms")
	var total [6]uint64
	for _, dom := range []string{"bars", "signals", "orders", "fills", "positions", "metrics", "control", "dlq"} {
		c := t[dom]
		var replayed uint64
		if dom == "fills" {
			replayed = replay.Handled + replay.Duplicates
		}
		p50, p99 := "-", "-"
		if h := d.latency.get(dom); h.Count() > 0 {
			p50, p99 = ms(h.Percentile(50)), ms(h.Percentile(99))
		}
		row := []uint64{c.produced, c.consumed, c.retried, c.dlq, c.decodeFail, replayed}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", dom, row[0], row[1], row[2], row[3], row[4], row[5], p50, p99)
		for i, v := range row {
			total[i] += v
		}
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%d\n", total[0], total[1], total[2], total[3], total[4], total[5])
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(d.w, "(counts from the bus_* metrics: consumed counts settled deliveries, replays and duplicates included; latency is produced_at to first delivery, from an HDR histogram)\n")
	fmt.Fprintf(d.w, "\ndemo complete in %s: position %s|AAPL.XNAS 100 shares; the replay applied nothing twice\n", time.Since(d.start).Round(time.Millisecond), liveAcct)
	return nil
}

// ms renders a latency in milliseconds, to the microsecond.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func dec(scaled int64, scale int32) *commonv1.Decimal {
	return &commonv1.Decimal{Scaled: scaled, Scale: scale}
}

// decimal renders a Decimal for people: 1920500 at scale 4 → 192.0500.
func decimal(d *commonv1.Decimal) string {
	s := fmt.Sprintf("%d", d.GetScaled())
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	scale := int(d.GetScale())
	if scale > 0 {
		for len(s) <= scale {
			s = "0" + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if neg {
		s = "-" + s
	}
	return s
}
