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
	return t.describe(ctx, details, names)
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
	infos, err := t.describe(ctx, details, []string{prefix})
	if err != nil {
		return transport.StreamInfo{}, err
	}
	return infos[0], nil
}

// describe reads offsets and configs of the named topics in one request
// each, whatever their number.
func (t *Transport) describe(ctx context.Context, details kadm.TopicDetails, names []string) ([]transport.StreamInfo, error) {
	if len(names) == 0 {
		return nil, nil
	}
	what := "describe topics " + strings.Join(names, ", ")
	for _, n := range names {
		if err := details[n].Err; err != nil {
			return nil, fmt.Errorf("describe topic %s: %w", n, mapErr(err))
		}
	}
	starts, err := t.adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, mapErr(err))
	}
	ends, err := t.adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, mapErr(err))
	}
	cfgs, err := t.adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("%s: configs: %w", what, mapErr(err))
	}
	out := make([]transport.StreamInfo, 0, len(names))
	for _, n := range names {
		info := transport.StreamInfo{Name: n, Prefix: n, Partitions: len(details[n].Partitions), Replicas: details[n].Partitions.NumReplicas()}
		for p, e := range ends[n] {
			info.Last += uint64(max(e.Offset, 0))
			if s, ok := starts.Lookup(n, p); ok {
				info.First += uint64(max(s.Offset, 0))
				info.Messages += uint64(max(e.Offset-s.Offset, 0))
			}
		}
		rc, err := cfgs.On(n, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			return nil, fmt.Errorf("describe topic %s: configs: %w", n, mapErr(err))
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
		out = append(out, info)
	}
	return out, nil
}
