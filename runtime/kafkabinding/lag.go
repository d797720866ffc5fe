package kafkabinding

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

var _ transport.LagReader = (*Transport)(nil)

// GroupLag implements transport.LagReader: the group's committed offsets
// against the topic's end offsets, through kadm, so the reader need not be
// a member. A group the cluster does not know, or that holds nothing of
// the topic, has not consumed it: ErrNotFound.
func (t *Transport) GroupLag(ctx context.Context, s transport.Stream, group string) (uint64, error) {
	lags, err := t.adm.Lag(ctx, group)
	if err != nil {
		return 0, fmt.Errorf("lag of group %s: %w", group, mapErr(err))
	}
	gl, ok := lags[group]
	if !ok || errors.Is(gl.DescribeErr, kerr.GroupIDNotFound) || gl.State == "Dead" {
		return 0, fmt.Errorf("lag of group %s on %s: %w: the cluster has no such group", group, s.Prefix, transport.ErrNotFound)
	}
	if err := gl.Error(); err != nil {
		return 0, fmt.Errorf("lag of group %s: %w", group, mapErr(err))
	}
	if len(gl.Lag[s.Prefix]) == 0 {
		return 0, fmt.Errorf("lag of group %s on %s: %w: the group has not consumed it", group, s.Prefix, transport.ErrNotFound)
	}
	var total int64
	for _, ml := range gl.Lag[s.Prefix] {
		total += max(ml.Lag, 0)
	}
	return uint64(total), nil
}
