// Package audit reconstructs a trading session from what the bus stored
// (seed §14: "reconstruct a trading session from envelopes: headers +
// payload hashes"): signals, orders, fills and positions of one env and
// time window, in causal order per client_order_id, each with its
// message_id, producer, trace id and payload sha256, and checks that each
// position moved by the fills it saw. ampybusctl audit prints it.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	fillsv1 "github.com/ampyfin/ampy-bus/proto/ampy/fills/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	signalsv1 "github.com/ampyfin/ampy-bus/proto/ampy/signals/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Options select the session.
type Options struct {
	Env        string
	Start, End time.Time
	// Account keeps one account's orders, fills and positions; empty keeps all.
	Account string
}

// Record is one stored message, as the audit trail shows it.
type Record struct {
	Kind       string    `json:"kind"` // signal, order, fill, position
	Topic      string    `json:"topic"`
	MessageID  string    `json:"message_id"`
	Producer   string    `json:"producer"`
	TraceID    string    `json:"trace_id"`
	ProducedAt time.Time `json:"produced_at"`
	// PayloadSHA256 fingerprints the payload as stored (the blob's hash
	// for a pointer).
	PayloadSHA256 string `json:"payload_sha256"`
	Sequence      uint64 `json:"sequence"`
	Partition     int32  `json:"partition"`
	// RedriveOf names the dead letter a redriven message came from.
	RedriveOf string `json:"redrive_of,omitempty"`
	Summary   string `json:"summary"`

	account, clientOrderID, security string
	qty                              *big.Rat
	side                             commonv1.Side
}

// Order is one client_order_id's trail.
type Order struct {
	ClientOrderID string `json:"client_order_id"`
	Account       string `json:"account"`
	Security      string `json:"security"`
	// Signals are the signals whose trace the order continues.
	Signals []Record `json:"signals,omitempty"`
	// Events are the order's requests and fills, in causal order.
	Events []Record `json:"events"`
	Filled string   `json:"filled"`
}

// Position is one account and security: how far fills moved it, and
// whether its snapshots agree.
type Position struct {
	Account  string `json:"account"`
	Security string `json:"security"`
	// Before is the last snapshot before the window (0 when none), After the
	// last one in it; Fills is what the window's fills add.
	Before     string   `json:"before"`
	After      string   `json:"after"`
	Fills      string   `json:"fills"`
	Consistent bool     `json:"consistent"`
	Snapshots  []Record `json:"snapshots"`
}

// Report is a reconstructed session.
type Report struct {
	Env        string     `json:"env"`
	Start      time.Time  `json:"start"`
	End        time.Time  `json:"end"`
	Account    string     `json:"account,omitempty"`
	Orders     []Order    `json:"orders"`
	Positions  []Position `json:"positions"`
	Consistent bool       `json:"consistent"`
	// Problems are stored messages that fail the contract's checks, and
	// inconsistencies; empty for a clean session.
	Problems []string `json:"problems,omitempty"`
}

// Run reads the session from the bus, which must serve opts.Env, through
// ephemeral reads that change nothing on the broker.
func Run(ctx context.Context, b *ampybus.Bus, cat *ampybus.Catalog, opts Options) (*Report, error) {
	if !opts.Start.Before(opts.End) {
		return nil, fmt.Errorf("audit: the window [%s, %s) is empty", opts.Start.Format(time.RFC3339), opts.End.Format(time.RFC3339))
	}
	r := &Report{Env: opts.Env, Start: opts.Start.UTC(), End: opts.End.UTC(), Account: opts.Account}
	from := transport.StartPosition{Kind: transport.StartAtTime, Time: opts.Start}
	var all []Record
	for _, kind := range []string{"signals", "orders", "fills"} {
		recs, problems, err := read(ctx, b, cat, "ampy."+opts.Env+"."+kind+".v1.>", from, opts.End)
		if err != nil {
			return nil, err
		}
		all, r.Problems = append(all, recs...), append(r.Problems, problems...)
	}
	// Positions from the start of the stream: the last snapshot before the
	// window is where each position began.
	positions, problems, err := read(ctx, b, cat, "ampy."+opts.Env+".positions.v1.>", transport.StartPosition{Kind: transport.StartFirst}, opts.End)
	if err != nil {
		return nil, err
	}
	r.Problems = append(r.Problems, problems...)
	r.build(all, positions, opts)
	return r, nil
}

// read collects the checked messages of subject in [from, until).
func read(ctx context.Context, b *ampybus.Bus, cat *ampybus.Catalog, subject string, from transport.StartPosition, until time.Time) ([]Record, []string, error) {
	tap, err := ampybus.OpenTap(ctx, b, cat, subject, ampybus.TapOptions{Start: from, Bounded: true, Until: until})
	if err != nil {
		return nil, nil, fmt.Errorf("audit: read %s: %w", subject, err)
	}
	defer tap.Close()
	var recs []Record
	var problems []string
	for {
		in, err := tap.Next(ctx)
		if errors.Is(err, transport.ErrEndOfStream) {
			return recs, problems, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("audit: read %s: %w", subject, err)
		}
		m := in.Message()
		if in.Problem != "" || in.Decoded == nil {
			problems = append(problems, fmt.Sprintf("%s seq %d (message_id %s): %s", in.Topic, in.Sequence(), m.Headers.MessageID, in.Problem))
			continue
		}
		hash := m.Headers.BlobHash
		if hash == "" {
			sum := sha256.Sum256(m.Payload)
			hash = "sha256:" + hex.EncodeToString(sum[:])
		}
		rec := Record{Topic: in.Topic, MessageID: m.Headers.MessageID, Producer: m.Headers.Producer, TraceID: m.Headers.Trace.TraceIDHex(),
			ProducedAt: m.Headers.ProducedAt, PayloadSHA256: hash, Sequence: in.Sequence(), Partition: in.Partition(),
			RedriveOf: m.Headers.Extra[ampybus.HeaderRedriveOf]}
		describe(&rec, in.Decoded.Payload)
		if rec.Kind != "" {
			recs = append(recs, rec)
		}
	}
}

// describe fills a record's kind, keys and one-line summary from its payload.
func describe(r *Record, p proto.Message) {
	switch m := p.(type) {
	case *signalsv1.Signal:
		r.Kind, r.security = "signal", sec(m.GetSecurity())
		r.Summary = fmt.Sprintf("%s %s %s horizon %s", strings.TrimPrefix(m.GetType().String(), "SIGNAL_TYPE_"), m.GetModelId(), r.security, m.GetHorizon())
	case *ordersv1.OrderRequest:
		r.Kind, r.account, r.clientOrderID, r.security, r.side = "order", m.GetAccountId(), m.GetClientOrderId(), sec(m.GetSecurity()), m.GetSide()
		r.qty = dec(m.GetQuantity())
		r.Summary = fmt.Sprintf("%s %s %s", strings.TrimPrefix(m.GetSide().String(), "SIDE_"), r.qty.FloatString(4), r.security)
		if lp := m.GetLimitPrice(); lp != nil {
			r.Summary += " limit " + dec(lp).FloatString(int(lp.GetScale()))
		}
	case *fillsv1.FillEvent:
		r.Kind, r.account, r.clientOrderID, r.security, r.qty = "fill", m.GetAccountId(), m.GetClientOrderId(), sec(m.GetSecurity()), dec(m.GetQuantity())
		r.Summary = fmt.Sprintf("filled %s @ %s", r.qty.FloatString(4), dec(m.GetPrice()).FloatString(int(m.GetPrice().GetScale())))
	case *positionsv1.PositionSnapshot:
		r.Kind, r.account, r.security, r.qty = "position", m.GetAccountId(), sec(m.GetSecurity()), dec(m.GetQuantity())
		r.Summary = fmt.Sprintf("%s %s at %s", r.security, r.qty.FloatString(4), m.GetAsOf().AsTime().UTC().Format(time.RFC3339Nano))
	}
}

func sec(s *commonv1.SecurityId) string { return s.GetSymbol() + "." + s.GetMic() }

func dec(d *commonv1.Decimal) *big.Rat {
	r := new(big.Rat).SetInt64(d.GetScaled())
	if d.GetScale() > 0 {
		r.Quo(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.GetScale())), nil)))
	}
	return r
}

// causal orders records by production time, then stream position.
func causal(a, b Record) int {
	if c := a.ProducedAt.Compare(b.ProducedAt); c != 0 {
		return c
	}
	return int(a.Sequence) - int(b.Sequence)
}

func (r *Report) build(all, positions []Record, opts Options) {
	keep := func(rec Record) bool { return opts.Account == "" || rec.account == opts.Account }
	signals := map[string][]Record{}
	orders := map[string]*Order{}
	var ids []string
	side := map[string]commonv1.Side{}
	for _, rec := range all {
		switch {
		case rec.Kind == "signal":
			signals[rec.TraceID] = append(signals[rec.TraceID], rec)
		case keep(rec):
			o := orders[rec.clientOrderID]
			if o == nil {
				o = &Order{ClientOrderID: rec.clientOrderID, Account: rec.account, Security: rec.security}
				orders[rec.clientOrderID] = o
				ids = append(ids, rec.clientOrderID)
			}
			o.Events = append(o.Events, rec)
			if rec.Kind == "order" {
				side[rec.clientOrderID] = rec.side
			}
		}
	}
	slices.Sort(ids)
	fills := map[string]*big.Rat{} // account|security → signed quantity
	for _, id := range ids {
		o := orders[id]
		slices.SortStableFunc(o.Events, causal)
		seen := map[string]bool{}
		filled := new(big.Rat)
		for _, e := range o.Events {
			if e.Kind == "order" {
				for _, s := range signals[e.TraceID] {
					if !seen[s.MessageID] {
						seen[s.MessageID] = true
						o.Signals = append(o.Signals, s)
					}
				}
				continue
			}
			q := new(big.Rat).Set(e.qty)
			if side[id] == commonv1.Side_SIDE_SELL {
				q.Neg(q)
			}
			filled.Add(filled, q)
			key := e.account + "|" + e.security
			if fills[key] == nil {
				fills[key] = new(big.Rat)
			}
			fills[key].Add(fills[key], q)
		}
		o.Filled = filled.FloatString(4)
		r.Orders = append(r.Orders, *o)
	}
	r.Consistent = true
	byKey := map[string]*Position{}
	var keys []string
	for _, rec := range positions {
		if !keep(rec) {
			continue
		}
		key := rec.account + "|" + rec.security
		p := byKey[key]
		if p == nil {
			p = &Position{Account: rec.account, Security: rec.security, Before: "0.0000"}
			byKey[key] = p
			keys = append(keys, key)
		}
		if rec.ProducedAt.Before(opts.Start) {
			p.Before = rec.qty.FloatString(4)
			continue
		}
		p.Snapshots = append(p.Snapshots, rec)
	}
	for key := range fills {
		if byKey[key] == nil {
			acct, security, _ := strings.Cut(key, "|")
			byKey[key] = &Position{Account: acct, Security: security, Before: "0.0000"}
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		p := byKey[key]
		slices.SortStableFunc(p.Snapshots, causal)
		before, _ := new(big.Rat).SetString(p.Before)
		after := new(big.Rat).Set(before)
		if n := len(p.Snapshots); n > 0 {
			after = p.Snapshots[n-1].qty
		}
		moved := fills[key]
		if moved == nil {
			moved = new(big.Rat)
		}
		p.After, p.Fills = after.FloatString(4), moved.FloatString(4)
		p.Consistent = new(big.Rat).Add(before, moved).Cmp(after) == 0
		if !p.Consistent {
			r.Consistent = false
			r.Problems = append(r.Problems, fmt.Sprintf("position %s %s: %s before, fills %s, but %s after", p.Account, p.Security, p.Before, p.Fills, p.After))
		}
		if len(p.Snapshots) > 0 || moved.Sign() != 0 {
			r.Positions = append(r.Positions, *p)
		}
	}
	if len(r.Problems) > 0 {
		r.Consistent = false
	}
}
