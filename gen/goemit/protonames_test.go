package goemit

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	_ "google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/apipb"
	_ "google.golang.org/protobuf/types/known/structpb"
	_ "google.golang.org/protobuf/types/known/typepb"
	_ "google.golang.org/protobuf/types/pluginpb"

	_ "github.com/ampyfin/ampy-bus/proto/ampy"
)

// The names goTypeOf derives from descriptors are the ones protoc-gen-go
// gave every message linked into this test: this repository's payloads and
// the well-known and descriptor types, whose field names (json_name,
// oneof_index, has_*) exercise the rules' corners.
func TestGoNamesMatchProtocGenGo(t *testing.T) {
	n := 0
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		md := mt.Descriptor()
		st := reflect.TypeOf(mt.Zero().Interface()).Elem()
		gt, err := goTypeOf(md)
		require.NoError(t, err, md.FullName())
		assert.Equal(t, st.PkgPath(), gt.ImportPath, md.FullName())
		assert.Equal(t, st.Name(), gt.Name, md.FullName())
		assert.Equal(t, pkgNameOf(st), gt.PkgName, md.FullName())
		for i := 0; i < st.NumField(); i++ {
			f := st.Field(i)
			for _, part := range strings.Split(f.Tag.Get("protobuf"), ",") {
				if name, ok := strings.CutPrefix(part, "name="); ok {
					assert.Equal(t, f.Name, gt.fields[protoreflect.Name(name)], "%s.%s", md.FullName(), name)
					n++
				}
			}
		}
		return true
	})
	assert.Greater(t, n, 300, "fields compared")
}

// pkgNameOf is the declared name of a Go type's package, from a method's
// or the type's own string form (pkg.Type).
func pkgNameOf(t reflect.Type) string {
	name, _, _ := strings.Cut(t.String(), ".")
	return name
}

func TestCamelCase(t *testing.T) {
	for in, want := range map[string]string{
		"client_order_id": "ClientOrderId", "json_name": "JsonName", "_private": "XPrivate", "field_1": "Field_1",
		"a__b": "A_B", "mic": "Mic", "HTTPStatus": "HTTPStatus", "x2y": "X2Y", "event_time": "EventTime",
	} {
		assert.Equal(t, want, camelCase(in), in)
	}
}

// Two payload types of one domain that share a Go name, from different
// packages, get UTF-8 checks under different names.
func TestUTF8CheckNamesDoNotCollide(t *testing.T) {
	e := &emitter{utf8Names: map[protoreflect.FullName]string{}}
	var got []string
	for _, c := range []struct {
		full protoreflect.FullName
		gt   *goType
	}{
		{"cx.risk.v1.Owner", &goType{PkgName: "riskv1", Name: "Owner"}},
		{"cx.hr.v1.Owner", &goType{PkgName: "hrv1", Name: "Owner"}},
		{"cx.hr.v1beta.Owner", &goType{PkgName: "hrv1", Name: "Owner"}},
		{"cx.risk.v1.Limit.Owner", &goType{PkgName: "riskv1", Name: "Limit_Owner"}},
	} {
		e.utf8Name(c.full, c.gt)
		got = append(got, e.utf8Names[c.full])
	}
	assert.Equal(t, []string{"checkUTF8Owner", "checkUTF8Hrv1Owner", "checkUTF8Hrv1Owner2", "checkUTF8Limit_Owner"}, got)
}
