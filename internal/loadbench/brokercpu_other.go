//go:build !linux

package loadbench

import (
	"errors"
	"time"
)

// childCPU is not read on this platform: the report leaves broker CPU out.
func childCPU(int) (time.Duration, error) {
	return 0, errors.New("another process's CPU time is read on Linux only")
}
