package schema_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	metricsv1 "github.com/ampyfin/ampy-bus/proto/ampy/metrics/v1"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// Strings says no where vtprotobuf's marshal methods do not write what
// proto does, and lists only the fields that lead to a UTF-8 string.
func TestStrings(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    protoreflect.MessageDescriptor
	}{
		{"a map: the methods leave key order to Go", (&metricsv1.Metric{}).ProtoReflect().Descriptor()},
		{"extension ranges: the methods drop extensions", (&descriptorpb.FileOptions{}).ProtoReflect().Descriptor()},
		{"required fields: the methods do not check them", (&descriptorpb.UninterpretedOption{}).ProtoReflect().Descriptor()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok := schema.Strings(tc.d)
			assert.False(t, ok)
		})
	}

	fields, ok := schema.Strings((&barsv1.BarBatch{}).ProtoReflect().Descriptor())
	require.True(t, ok)
	names := map[protoreflect.FullName][]protoreflect.Name{}
	for t, fds := range fields {
		for _, fd := range fds {
			names[t] = append(names[t], fd.Name())
		}
	}
	assert.Equal(t, map[protoreflect.FullName][]protoreflect.Name{
		"ampy.bars.v1.BarBatch":     {"bars"},
		"ampy.bars.v1.Bar":          {"security", "adjustment_policy_id", "meta"},
		"ampy.common.v1.SecurityId": {"symbol", "mic", "figi", "isin"},
		"ampy.common.v1.Meta":       {"run_id", "source", "producer", "schema_version", "checksum"},
	}, names, "Timestamps and Decimals hold no string and are left out")
}
