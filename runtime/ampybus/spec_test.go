package ampybus

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSplitSubtopic(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want []string
	}{
		{"XNAS.AAPL", 2, []string{"XNAS", "AAPL"}},
		{"XNAS.AAPL", 1, nil},
		{"XNAS.AAPL", 3, nil},
		{"a.b.c", 3, []string{"a", "b", "c"}},
		{"requests", 1, []string{"requests"}},
		{"", 1, []string{""}}, // empty tokens are ValidToken's to refuse
		{"a..b", 3, []string{"a", "", "b"}},
		{"a.b.", 2, nil},
		{"x", 0, nil},
	} {
		into := make([]string, tc.n)
		ok := SplitSubtopic(tc.in, into)
		assert.Equal(t, tc.want != nil, ok, "%q into %d", tc.in, tc.n)
		if ok {
			assert.Equal(t, tc.want, into, "%q", tc.in)
		}
	}
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		var into [2]string
		SplitSubtopic("XNAS.AAPL", into[:])
	}), "splitting allocates nothing")
}

func TestValidToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"AAPL", true},
		{"BRK-B", true},
		{"ÄKTIE", true}, // non-ASCII letters are tokens
		{"7203", true},
		{"", false},
		{"A.B", false},
		{"A*", false},
		{">", false},
		{"A B", false},
		{"A\tB", false},
		{"A\x00", false},
		{"A\x7f", false},
		{"A\u00a0B", false}, // a no-break space is whitespace too
		{"Ä\u0085", false},  // as is NEL
		{"\xff", false},     // not UTF-8
		{"Ä.B", false},      // the ASCII rules hold past a non-ASCII byte
	} {
		assert.Equal(t, tc.want, ValidToken(tc.in), "%q", tc.in)
	}
}
