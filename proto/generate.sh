#!/usr/bin/env bash
# Regenerates the Go code for every .proto under proto/ (the .pb.go files land
# next to each .proto). Run from the repository root:  bash proto/generate.sh
# protoc-gen-go is built from the version pinned by go.mod's `tool` directive.
set -euo pipefail

if ! command -v protoc >/dev/null 2>&1; then
  echo "generate.sh: protoc not found; install it with: apt-get install protobuf-compiler" >&2
  exit 1
fi

if [[ ! -f go.mod || ! -d proto ]]; then
  echo "generate.sh: run this from the repository root (the directory holding go.mod and proto/)" >&2
  exit 1
fi

# Directory holding the well-known types (google/protobuf/timestamp.proto).
wkt_include="${PROTOC_INCLUDE:-/usr/include}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

go build -o "$tmp/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go

mapfile -t protos < <(find proto -name '*.proto' | LC_ALL=C sort)

protoc -I proto -I "$wkt_include" \
  --plugin=protoc-gen-go="$tmp/protoc-gen-go" \
  --go_out=proto --go_opt=paths=source_relative \
  "${protos[@]}"

echo "generate.sh: generated Go code for ${#protos[@]} .proto files"
