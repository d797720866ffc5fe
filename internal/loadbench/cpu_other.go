//go:build !unix

package loadbench

import "time"

// processCPU is not measured on this platform; CPU figures read zero.
func processCPU() time.Duration { return 0 }
