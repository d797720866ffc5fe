// Package protogo writes the Go code protoc-gen-go writes for .proto files,
// without protoc: the files are compiled in process (gen/protoset) and
// handed to protoc-gen-go's generator as protoc would hand them. Tests use it
// to give scratch service modules the Go types of their own protos.
package protogo

import (
	"context"
	"fmt"
	"regexp"

	"google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"

	// The features Marshalers asks vtprotobuf's generator for register
	// themselves by name.
	_ "github.com/planetscale/vtprotobuf/features/marshal"
	_ "github.com/planetscale/vtprotobuf/features/size"
	_ "github.com/planetscale/vtprotobuf/features/unmarshal"
	"github.com/planetscale/vtprotobuf/generator"

	"github.com/ampyfin/ampy-bus/gen/protoset"
)

// Marshalers are the vtprotobuf features Generate adds with marshalers set:
// a message's SizeVT and MarshalToSizedBufferVT, which ampybus publishers
// call instead of proto.Marshal (ampybus.FastMarshaler), and UnmarshalVT,
// which consumers call instead of proto.Unmarshal once a payload's bytes
// have passed the checks it skips (ampybus.FastUnmarshaler).
var Marshalers = []string{"size", "marshal", "unmarshal"}

// Generate returns the .pb.go files for every .proto under the import
// roots, by output path. parameter is protoc-gen-go's (--go_opt), such as
// "paths=source_relative"; empty writes each file under its go_package path.
// With marshalers, each file also gets protoc-gen-go-vtproto's size,
// marshal and unmarshal methods in FILE_vtproto.pb.go, as
// protoc-gen-go-vtproto --go-vtproto_opt=features=size+marshal+unmarshal
// writes them.
func Generate(ctx context.Context, roots []string, parameter string, marshalers bool) (map[string][]byte, error) {
	files, err := protoset.Compile(ctx, roots)
	if err != nil {
		return nil, err
	}
	req := &pluginpb.CodeGeneratorRequest{Parameter: proto.String(parameter)}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) { // imports before importers, as protoc orders them
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := 0; i < f.Imports().Len(); i++ {
			add(f.Imports().Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(f))
	}
	for _, f := range files {
		add(f)
		req.FileToGenerate = append(req.FileToGenerate, f.Path())
	}
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		return nil, fmt.Errorf("protoc-gen-go: %w", err)
	}
	for _, f := range plugin.Files {
		if f.Generate {
			internal_gengo.GenerateFile(plugin, f)
		}
	}
	plugin.SupportedFeatures = internal_gengo.SupportedFeatures
	plugin.SupportedEditionsMinimum = internal_gengo.SupportedEditionsMinimum
	plugin.SupportedEditionsMaximum = internal_gengo.SupportedEditionsMaximum
	resp := plugin.Response()
	if resp.Error != nil {
		return nil, fmt.Errorf("protoc-gen-go: %s", resp.GetError())
	}
	out := make(map[string][]byte, len(resp.File))
	for _, f := range resp.File {
		out[f.GetName()] = []byte(f.GetContent())
	}
	if marshalers {
		if err := vtproto(req, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// VTProtoVersion is the vtprotobuf release go.mod requires, named in the
// files it writes (a test keeps the two in step).
const VTProtoVersion = "v0.6.0"

// vtVersion is the line naming the generator's version, which vtprotobuf
// takes from the running binary's build info: a go run of a tool in this
// module would stamp the commit, and the output would change with every one.
var vtVersion = regexp.MustCompile(`(?m)^// protoc-gen-go-vtproto version:.*\n`)

// vtproto adds protoc-gen-go-vtproto's Marshalers files for req to out.
func vtproto(req *pluginpb.CodeGeneratorRequest, out map[string][]byte) error {
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		return fmt.Errorf("protoc-gen-go-vtproto: %w", err)
	}
	g, err := generator.NewGenerator(plugin, Marshalers, &generator.Config{})
	if err != nil {
		return fmt.Errorf("protoc-gen-go-vtproto: %w", err)
	}
	g.Generate()
	resp := plugin.Response()
	if resp.Error != nil {
		return fmt.Errorf("protoc-gen-go-vtproto: %s", resp.GetError())
	}
	for _, f := range resp.File {
		out[f.GetName()] = vtVersion.ReplaceAll([]byte(f.GetContent()), []byte("// protoc-gen-go-vtproto version: "+VTProtoVersion+"\n"))
	}
	return nil
}
