package contract

import _ "embed"

// JSONSchema is the JSON Schema (draft 2020-12) of contract.yaml, so editors and
// tools can validate a contract without running the generator.
//
//go:embed contract.schema.json
var JSONSchema []byte
