package contract

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ParseDuration accepts Go durations (50ms, 2m, 36h) plus days and weeks (7d, 2w),
// which retention settings need.
func ParseDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok && n != "" && allDigits(n) {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil || v > int64(1<<62)/int64(u.unit) {
				return 0, fmt.Errorf("duration %q out of range", s)
			}
			return time.Duration(v) * u.unit, nil
		}
	}
	return time.ParseDuration(s)
}

// FormatDuration writes a whole number of days as such (7d), anything else
// as Go does (36h0m0s): the form retention is written in.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// ParseSize accepts bytes (131072) or binary units (128KiB, 1MiB, 1GiB).
func ParseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	if num == "" || !allDigits(num) {
		return 0, fmt.Errorf("size %q: want a number of bytes or KiB/MiB/GiB", s)
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v > (1<<62)/mult {
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return v * mult, nil
}

// FormatSize writes n in the largest binary unit that divides it.
func FormatSize(n int64) string {
	for _, u := range sizeUnits {
		if n >= u.mult && n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.suffix)
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

func allDigits(s string) bool {
	for _, r := range s {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return s != ""
}

// GoPackage is the Go package name generated for a domain: the name without
// underscores (corporate_actions → corporateactions).
func GoPackage(domain string) string {
	return strings.ReplaceAll(domain, "_", "")
}
