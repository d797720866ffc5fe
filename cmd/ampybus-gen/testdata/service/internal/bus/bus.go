// Package bus holds the typed bus API generated from the service's contract.
package bus

//go:generate go tool ampybus-gen generate -contract ../../contract.yaml -proto_path ../../proto -out .
