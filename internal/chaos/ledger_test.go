package chaos_test

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/positions"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// acked is what the publisher was told the broker stored: message id →
// key and sequence.
type acked struct {
	mu   sync.Mutex
	byID map[string]string
	last time.Time
	// stall is the longest gap between two acknowledgements.
	stall time.Duration
}

// publish sends seqs [from, to) for every key, in order per key, paced by
// gap. An unacknowledged publish is republished with the same message id, as
// ErrMaybeStored asks, until it is acknowledged.
func (a *acked) publish(ctx context.Context, t *testing.T, b *ampybus.Bus, keys, from, to int, gap time.Duration) {
	t.Helper()
	pub := positions.NewSnapshotsPublisher(b)
	for seq := from; seq < to; seq++ {
		for k := range keys {
			m := &positionsv1.PositionSnapshot{AccountId: "ACC-" + strconv.Itoa(k), Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
				Quantity: &commonv1.Decimal{Scaled: int64(seq)}, AsOf: timestamppb.Now()}
			var opts []ampybus.PublishOption
			for try := 1; ; try++ {
				res, err := pub.Publish(ctx, positions.NewSnapshotsSubtopic(), m, opts...)
				if err == nil {
					a.record(res.MessageID, m.GetAccountId()+"|AAPL.XNAS", seq)
					break
				}
				require.True(t, errors.Is(err, ampybus.ErrUnavailable) && try < 20 && ctx.Err() == nil, "publish %d/%d: %v", k, seq, err)
				t.Logf("publish of key %d seq %d failed (try %d), republishing with the same id: %v", k, seq, try, err)
				opts = []ampybus.PublishOption{ampybus.WithMessageID(res.MessageID)}
			}
		}
		time.Sleep(gap)
	}
}

func (a *acked) record(id, key string, seq int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID == nil {
		a.byID = map[string]string{}
	}
	a.byID[id] = key + " " + strconv.Itoa(seq)
	now := time.Now()
	if !a.last.IsZero() {
		a.stall = max(a.stall, now.Sub(a.last))
	}
	a.last = now
}

func (a *acked) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.byID)
}

// effect is one line A of a member's log.
type effect struct {
	at     int64
	member string
	key    string
	seq    int
	id     string
}

// ledger reads the members' effect logs.
type ledger struct {
	effects []effect
	marked  map[string]int64 // message id → first time its mark was stored
}

func readLedger(t *testing.T, logs map[string]string) *ledger {
	t.Helper()
	l := &ledger{marked: map[string]int64{}}
	for member, path := range logs {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 0 {
				continue
			}
			at, _ := strconv.ParseInt(fs[1], 10, 64)
			switch {
			case fs[0] == "A" && len(fs) == 5:
				seq, _ := strconv.Atoi(fs[3])
				l.effects = append(l.effects, effect{at: at, member: member, key: fs[2], seq: seq, id: fs[4]})
			case fs[0] == "M" && len(fs) == 3:
				id := fs[2][strings.LastIndex(fs[2], "|")+1:]
				if old, ok := l.marked[id]; !ok || at < old {
					l.marked[id] = at
				}
			}
			// A torn last line (the process was killed mid-write) is skipped.
		}
		f.Close()
	}
	slices.SortFunc(l.effects, func(a, b effect) int { return cmp.Compare(a.at, b.at) })
	return l
}

func (l *ledger) applied() int {
	ids := map[string]bool{}
	for _, e := range l.effects {
		ids[e.id] = true
	}
	return len(ids)
}

// tally counts what the run must not have: acknowledged messages never
// applied, effects applied twice (what a persistent dedupe store must
// prevent), and per-key inversions. One exception is counted apart: an
// effect applied again because, between the effect and storing its mark,
// the member that applied it was killed (killed), or the broker holding the
// store went down (outage) and the key moved before the mark could be
// stored. No store closes that window; only an effect that is itself
// idempotent does.
type tally struct {
	acked, applied, missing, duplicated, inversions, unmarkedRepeats int
	byMember                                                         map[string]int
	// examples describe the first few duplicates and inversions.
	examples []string
}

func (l *ledger) tally(a *acked, outage time.Time, killed ...string) tally {
	a.mu.Lock()
	defer a.mu.Unlock()
	tl := tally{acked: len(a.byID), applied: l.applied(), byMember: map[string]int{}}
	seen := map[string]effect{} // message id → its first application
	newest := map[string]int{}
	note := func(format string, args ...any) {
		if len(tl.examples) < 5 {
			tl.examples = append(tl.examples, fmt.Sprintf(format, args...))
		}
	}
	for _, e := range l.effects {
		tl.byMember[e.member]++
		if first, ok := seen[e.id]; ok {
			m, marked := l.marked[e.id]
			unmarked := !marked || m > e.at
			cut := !outage.IsZero() && first.at < outage.UnixNano() && (!marked || m > outage.UnixNano())
			if unmarked && (slices.Contains(killed, first.member) || cut) {
				tl.unmarkedRepeats++
				continue
			}
			tl.duplicated++
			note("%s %s seq %d applied by %s, then by %s %v later (mark stored: %v, %v after the first)",
				e.id, e.key, e.seq, first.member, e.member, time.Duration(e.at-first.at), marked, time.Duration(m-first.at))
			continue
		}
		seen[e.id] = e
		if n, ok := newest[e.key]; ok && e.seq < n {
			tl.inversions++
			note("%s seq %d applied by %s after seq %d", e.key, e.seq, e.member, n)
		}
		newest[e.key] = max(newest[e.key], e.seq)
	}
	for id := range a.byID {
		if _, ok := seen[id]; !ok {
			tl.missing++
		}
	}
	return tl
}

func (tl tally) String() string {
	s := fmt.Sprintf("acked %d, applied %d, missing %d, duplicated %d, inversions %d (re-applied after a kill or outage between effect and mark: %d); by member %v",
		tl.acked, tl.applied, tl.missing, tl.duplicated, tl.inversions, tl.unmarkedRepeats, tl.byMember)
	for _, e := range tl.examples {
		s += "\n    " + e
	}
	return s
}

// resumed is how long after killedAt the keys that member last applied
// before it were applied again, by another member: the failover time.
func (l *ledger) resumed(member string, killedAt time.Time) (keys int, slowest time.Duration) {
	last := map[string]string{}
	for _, e := range l.effects {
		if e.at < killedAt.UnixNano() {
			last[e.key] = e.member
		}
	}
	waiting := map[string]bool{}
	for k, m := range last {
		if m == member {
			waiting[k] = true
		}
	}
	keys = len(waiting)
	for _, e := range l.effects {
		if e.at >= killedAt.UnixNano() && waiting[e.key] {
			delete(waiting, e.key)
			slowest = max(slowest, time.Duration(e.at-killedAt.UnixNano()))
		}
	}
	return keys, slowest
}

// waitApplied waits until every acknowledged message appears in the logs.
func waitApplied(t *testing.T, a *acked, logs map[string]string, within time.Duration) *ledger {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l := readLedger(t, logs)
		if tl := l.tally(a, time.Time{}); tl.missing == 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
}
