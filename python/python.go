// Package python carries the hand-written Python runtime of ampy-bus
// (ampybus/: envelope headers, Go-identical gzip, the Kafka partitioner,
// topic and key rules), so ampybus-gen can write it beside the Python
// package it generates from a contract.
package python

import "embed"

// Runtime holds ampybus/*.py.
//
//go:embed ampybus/*.py
var Runtime embed.FS
