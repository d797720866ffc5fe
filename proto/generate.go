//go:build ignore

// Regenerates the Go code for every .proto under proto/, and for the test
// payload types under internal/wiretest (each .pb.go lands next to its
// .proto), without protoc: the files are compiled in process and given to
// protoc-gen-go's generator (internal/protogo). Run from the repository
// root: go run proto/generate.go (make proto).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ampyfin/ampy-bus/internal/protogo"
)

func main() {
	for _, root := range []string{"proto", "internal/wiretest"} {
		files, err := protogo.Generate(context.Background(), []string{root}, "paths=source_relative", true)
		if err != nil {
			fmt.Fprintln(os.Stderr, "proto/generate.go:", err)
			os.Exit(1)
		}
		for name, src := range files {
			p := filepath.Join(root, filepath.FromSlash(name))
			if err := os.WriteFile(p, src, 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "proto/generate.go:", err)
				os.Exit(1)
			}
			fmt.Println("wrote", p)
		}
	}
}
