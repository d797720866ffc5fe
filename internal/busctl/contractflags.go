package busctl

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/spf13/pflag"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/dynamic"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/generated"
)

// catalog is the contract the CLI serves: the one it was built with, or
// the one --contract names.
var catalog = generated.Catalog

// foreign reports that --contract replaced the built-in contract.
var foreign bool

// loaded is the contract --contract named; nil for the built-in one.
var loaded *contract.Contract

// contractFlags name a team's own contract and its payload schemas, for
// every command; without them the CLI serves the contract it was built with.
type contractFlags struct {
	path           string
	protoPaths     []string
	descriptorSets []string
	done           bool
}

func (f *contractFlags) globalFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.path, "contract", "", "a team's contract.yaml instead of the built-in one ($AMPYBUS_CONTRACT)")
	fs.StringArrayVar(&f.protoPaths, "proto_path", nil, "an import root of the contract's .proto files, repeatable ($AMPYBUS_PROTO_PATH, a path list)")
	fs.StringArrayVar(&f.descriptorSets, "descriptor_set_in", nil, "a FileDescriptorSet instead of, or besides, .proto files ($AMPYBUS_DESCRIPTOR_SET_IN)")
}

// settle fills what the command line did not give. The contract and its
// schemas are one unit: the contract is the flag's, else the environment's,
// else the context's; its schema paths are those the environment (or, for
// the context's contract, the context) lists, and then the flags'.
func (f *contractFlags) settle(fs *pflag.FlagSet, getenv func(string) string, x *Context) {
	var protoPaths, descriptorSets []string
	switch {
	case fs.Changed("contract"), getenv("AMPYBUS_CONTRACT") != "", x == nil || x.Contract == "":
		if !fs.Changed("contract") {
			f.path = getenv("AMPYBUS_CONTRACT")
		}
		if v := getenv("AMPYBUS_PROTO_PATH"); v != "" {
			protoPaths = filepath.SplitList(v)
		}
		if v := getenv("AMPYBUS_DESCRIPTOR_SET_IN"); v != "" {
			descriptorSets = filepath.SplitList(v)
		}
	default:
		f.path, protoPaths, descriptorSets = x.Contract, x.ProtoPaths, x.DescriptorSets
	}
	f.protoPaths = append(slices.Clip(protoPaths), f.protoPaths...)
	f.descriptorSets = append(slices.Clip(descriptorSets), f.descriptorSets...)
}

// load makes the contract the flags name, with its payload schemas, the
// catalog commands use; once per process.
func (f *contractFlags) load(ctx context.Context) error {
	if f.done {
		return nil
	}
	f.done = true
	catalog, foreign, loaded = generated.Catalog, false, nil
	if f.path == "" {
		if len(f.protoPaths)+len(f.descriptorSets) > 0 {
			return usagef("--proto_path and --descriptor_set_in go with --contract FILE")
		}
		return nil
	}
	schemas, err := protoset.Load(ctx, protoset.Options{ProtoPaths: f.protoPaths, DescriptorSets: f.descriptorSets})
	if err != nil {
		return fmt.Errorf("contract %s: %w", f.path, err)
	}
	c, err := contract.Load(f.path, schemas)
	if err != nil {
		return err
	}
	catalog, foreign, loaded = dynamic.Catalog(c), true, c
	return nil
}
