package natsbinding

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

var _ transport.Describer = (*Transport)(nil)

// Streams implements transport.Describer: the streams holding namespace.… subjects.
func (t *Transport) Streams(ctx context.Context, namespace string) ([]transport.StreamInfo, error) {
	var out []transport.StreamInfo
	l := t.js.ListStreams(ctx, jetstream.WithStreamListSubject("0."+namespace+".>"))
	for si := range l.Info() {
		out = append(out, streamInfo(si))
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", mapErr(err))
	}
	return out, nil
}

// DescribeStream implements transport.Describer.
func (t *Transport) DescribeStream(ctx context.Context, prefix string) (transport.StreamInfo, error) {
	s, err := t.js.Stream(ctx, StreamName(prefix))
	if err != nil {
		return transport.StreamInfo{}, fmt.Errorf("describe stream %s: %w", StreamName(prefix), mapErr(err))
	}
	si, err := s.Info(ctx)
	if err != nil {
		return transport.StreamInfo{}, fmt.Errorf("describe stream %s: %w", StreamName(prefix), mapErr(err))
	}
	return streamInfo(si), nil
}

func streamInfo(si *jetstream.StreamInfo) transport.StreamInfo {
	info := transport.StreamInfo{
		Name: si.Config.Name, Messages: si.State.Msgs, Bytes: si.State.Bytes,
		Retention: si.Config.MaxAge, MaxMessageBytes: int64(si.Config.MaxMsgSize),
		First: si.State.FirstSeq, Last: si.State.LastSeq, Created: si.Created,
	}
	for _, s := range si.Config.Subjects {
		if p, ok := prefixOfStreamSubject(s); ok {
			info.Prefix = p
			break
		}
	}
	info.Partitions, info.Replicas = partitionsOf(si.Config), si.Config.Replicas
	return info
}
