package dynamic_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/dynamic"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/runtime/fixture"
)

// The catalog read at run time from contract.yaml and proto/ is the one
// generated from them: the same specs, and for every fixture's payload (and
// each payload with a key or bound field cleared) the same keys or the same
// error, and the same ordering time.
func TestMatchesTheGeneratedCatalog(t *testing.T) {
	compiled, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{"../../proto"}})
	require.NoError(t, err)
	// A descriptor set gives descriptors of its own, even for the
	// well-known types: nothing may mix them with the linked ones.
	var set descriptorpb.FileDescriptorSet
	compiled.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
		return true
	})
	data, err := proto.Marshal(&set)
	require.NoError(t, err)
	setFile := filepath.Join(t.TempDir(), "schemas.binpb")
	require.NoError(t, os.WriteFile(setFile, data, 0o644))
	fromSet, err := protoset.Load(context.Background(), protoset.Options{DescriptorSets: []string{setFile}})
	require.NoError(t, err)
	for name, schemas := range map[string]*protoregistry.Files{"proto_path": compiled, "descriptor_set_in": fromSet} {
		t.Run(name, func(t *testing.T) { matchGenerated(t, schemas) })
	}
}

func matchGenerated(t *testing.T, schemas *protoregistry.Files) {
	c, err := contract.Load("../../contract.yaml", schemas)
	require.NoError(t, err)
	dyn := dynamic.Catalog(c)
	gen := generated.Catalog
	require.Len(t, dyn.Domains(), len(gen.Domains()))
	for i, gd := range gen.Domains() {
		dd := dyn.Domains()[i]
		want, got := *gd, *dd
		if gd.DeadLetter != nil {
			require.NotNil(t, dd.DeadLetter, gd.Name)
			assert.Equal(t, gd.DeadLetter.Prefix("dev"), dd.DeadLetter.Prefix("dev"), gd.Name)
		}
		want.DeadLetter, got.DeadLetter = nil, nil
		assert.Equal(t, want, got, gd.Name)
		gr, dr := gen.Routes(gd), dyn.Routes(dd)
		require.Len(t, dr, len(gr), gd.Name)
		for j := range gr {
			ws, gs := *gr[j].Spec, *dr[j].Spec
			ws.Domain, gs.Domain = nil, nil
			assert.Equal(t, ws, gs, "%s %s", gd.Name, gr[j].Spec.Pattern)
		}
	}

	fixtures, err := fixture.LoadDir("../../fixtures")
	require.NoError(t, err)
	n := 0
	for _, f := range fixtures {
		gt, err := gen.Resolve(f.Topic)
		require.NoError(t, err, f.Path)
		if gt.Route == nil || f.JSON == nil {
			continue
		}
		dt, err := dyn.Resolve(f.Topic)
		require.NoError(t, err, f.Path)
		typed, dynamic := gt.Route.NewPayload(), dt.Route.NewPayload()
		require.NoError(t, protojson.Unmarshal(f.JSON, typed), f.Path)
		require.NoError(t, protojson.Unmarshal(f.JSON, dynamic), f.Path)
		same := func(what string) {
			wk, werr := gt.Route.Keys(gt.Subtopic, typed)
			dk, derr := dt.Route.Keys(dt.Subtopic, dynamic)
			assert.Equal(t, wk, dk, "%s %s", f.Path, what)
			if werr != nil || derr != nil {
				require.Error(t, derr, "%s %s: generated: %v", f.Path, what, werr)
				assert.Equal(t, werr.Error(), derr.Error(), "%s %s", f.Path, what)
			}
			assert.Equal(t, gt.Route.OrderTime(typed), dt.Route.OrderTime(dynamic), "%s %s", f.Path, what)
			assert.Equal(t, gt.Route.ExpiresAt(typed), dt.Route.ExpiresAt(dynamic), "%s %s", f.Path, what)
			n++
		}
		same("as written")
		// Clear each top-level field in turn: keys and bind checks fail alike.
		fields := typed.ProtoReflect().Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			typed2, dynamic2 := proto.Clone(typed), proto.Clone(dynamic)
			typed2.ProtoReflect().Clear(fd)
			dynamic2.ProtoReflect().Clear(dynamic2.ProtoReflect().Descriptor().Fields().ByName(fd.Name()))
			typed, dynamic = typed2, dynamic2
			same("without " + string(fd.Name()))
			require.NoError(t, protojson.Unmarshal(f.JSON, typed), f.Path)
			require.NoError(t, protojson.Unmarshal(f.JSON, dynamic), f.Path)
		}
	}
	assert.Greater(t, n, 300, "payloads compared")
}
