package kafkabinding

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

var _ transport.Describer = (*Transport)(nil)

// Streams implements transport.Describer: the topics named namespace.….
func (t *Transport) Streams(ctx context.Context, namespace string) ([]transport.StreamInfo, error) {
	details, err := t.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", mapErr(err))
	}
	var names []string
	for name := range details {
		if strings.HasPrefix(name, namespace+".") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]transport.StreamInfo, 0, len(names))
	for _, name := range names {
		info, err := t.DescribeStream(ctx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// DescribeStream implements transport.Describer; a topic's name is its prefix.
func (t *Transport) DescribeStream(ctx context.Context, prefix string) (transport.StreamInfo, error) {
	details, err := t.adm.ListTopics(ctx, prefix)
	if err != nil {
		return transport.StreamInfo{}, fmt.Errorf("describe topic %s: %w", prefix, mapErr(err))
	}
	d, ok := details[prefix]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return transport.StreamInfo{}, fmt.Errorf("describe topic %s: %w", prefix, transport.ErrNotFound)
	}
	if d.Err != nil {
		return transport.StreamInfo{}, fmt.Errorf("describe topic %s: %w", prefix, mapErr(d.Err))
	}
	info := transport.StreamInfo{Name: prefix, Prefix: prefix, Partitions: len(d.Partitions)}
	starts, err := t.adm.ListStartOffsets(ctx, prefix)
	if err != nil {
		return info, fmt.Errorf("describe topic %s: %w", prefix, mapErr(err))
	}
	ends, err := t.adm.ListEndOffsets(ctx, prefix)
	if err != nil {
		return info, fmt.Errorf("describe topic %s: %w", prefix, mapErr(err))
	}
	ends.Each(func(e kadm.ListedOffset) {
		info.Last += uint64(max(e.Offset, 0))
		if s, ok := starts.Lookup(prefix, e.Partition); ok {
			info.First += uint64(max(s.Offset, 0))
			info.Messages += uint64(max(e.Offset-s.Offset, 0))
		}
	})
	cfgs, err := t.adm.DescribeTopicConfigs(ctx, prefix)
	if err != nil {
		return info, fmt.Errorf("describe topic %s: configs: %w", prefix, mapErr(err))
	}
	rc, err := cfgs.On(prefix, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return info, fmt.Errorf("describe topic %s: configs: %w", prefix, mapErr(err))
	}
	for _, c := range rc.Configs {
		if c.Value == nil {
			continue
		}
		switch c.Key {
		case "retention.ms":
			if ms, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && ms > 0 {
				info.Retention = time.Duration(ms) * time.Millisecond
			}
		case "max.message.bytes":
			info.MaxMessageBytes, _ = strconv.ParseInt(*c.Value, 10, 64)
		}
	}
	return info, nil
}
