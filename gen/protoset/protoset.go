// Package protoset loads the payload schemas a contract names: .proto files
// compiled in process (no protoc), or a FileDescriptorSet written by buf or
// protoc. The generator and ampybusctl resolve a contract's payloads
// through the registry it returns, so a service repository's own protos
// serve exactly as this repository's do.
package protoset

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Options says where the schemas are.
type Options struct {
	// ProtoPaths are import roots (protoc's -I): every .proto file below
	// each is compiled, and imports resolve against all of them, then
	// against the well-known types (google/protobuf/*.proto).
	ProtoPaths []string
	// DescriptorSets are files holding a serialized FileDescriptorSet
	// (buf build -o, protoc --descriptor_set_out --include_imports).
	DescriptorSets []string
}

// ErrNoSchemas: neither a proto path nor a descriptor set was given.
var ErrNoSchemas = errors.New("no payload schemas: give --proto_path DIR or --descriptor_set_in FILE")

// Load returns a registry holding every file of opts and the files they import.
func Load(ctx context.Context, opts Options) (*protoregistry.Files, error) {
	if len(opts.ProtoPaths) == 0 && len(opts.DescriptorSets) == 0 {
		return nil, ErrNoSchemas
	}
	reg := new(protoregistry.Files)
	for _, p := range opts.DescriptorSets {
		if err := loadSet(reg, p); err != nil {
			return nil, err
		}
	}
	if len(opts.ProtoPaths) > 0 {
		files, err := Compile(ctx, opts.ProtoPaths)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if err := register(reg, f); err != nil {
				return nil, err
			}
		}
	}
	return reg, nil
}

// Compile compiles every .proto file below the import roots, in path order;
// the files they import (well-known types included) hang off each file's
// Imports.
func Compile(ctx context.Context, roots []string) ([]protoreflect.FileDescriptor, error) {
	var names []string
	for _, root := range roots {
		info, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("proto path %s: %w", root, err)
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("proto path %s is not a directory: give the import root that holds the .proto files", root)
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".proto") {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			if name := filepath.ToSlash(rel); !slices.Contains(names, name) {
				names = append(names, name)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("proto path %s: %w", root, err)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no .proto files under %s", strings.Join(roots, ", "))
	}
	slices.Sort(names)
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: roots}),
		// Comments too: generated Go code carries them.
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	linked, err := c.Compile(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("compile protos: %w", err)
	}
	out := make([]protoreflect.FileDescriptor, len(linked))
	for i, f := range linked {
		out[i] = f
	}
	return out, nil
}

// loadSet registers every file of a serialized FileDescriptorSet.
func loadSet(reg *protoregistry.Files, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("descriptor set: %w", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		return fmt.Errorf("descriptor set %s: not a serialized FileDescriptorSet: %w", path, err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return fmt.Errorf("descriptor set %s: %w (write it with its imports: buf build -o FILE, or protoc --include_imports --descriptor_set_out FILE)", path, err)
	}
	var errs []error
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if err := register(reg, f); err != nil {
			errs = append(errs, err)
			return false
		}
		return true
	})
	return errors.Join(errs...)
}

// register adds f, after the files it imports, unless a file of its path is
// already there.
func register(reg *protoregistry.Files, f protoreflect.FileDescriptor) error {
	if _, err := reg.FindFileByPath(f.Path()); err == nil {
		return nil
	}
	for i := 0; i < f.Imports().Len(); i++ {
		if err := register(reg, f.Imports().Get(i).FileDescriptor); err != nil {
			return err
		}
	}
	if err := reg.RegisterFile(f); err != nil {
		return fmt.Errorf("schemas: %s: %w", f.Path(), err)
	}
	return nil
}
