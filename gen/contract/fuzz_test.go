package contract_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/gen/contract"
)

// FuzzParse: whatever the bytes, the loader returns a contract or
// contract.Errors, each naming the file, a line and a problem; it never
// panics. Seeds are the shipped contract, the generator's test contracts
// and the broken ones of this package's tests.
func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob("../goemit/testdata/*/contract.yaml")
	for _, p := range append(paths, "../../contract.yaml") {
		data, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte(base))
	for _, c := range malformed {
		f.Add([]byte(c.src()))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := contract.Parse("c.yaml", data, protoregistry.GlobalFiles)
		if err == nil {
			require.NotNil(t, c)
			return
		}
		var errs contract.Errors
		require.True(t, errors.As(err, &errs), "want contract.Errors, got %T: %v", err, err)
		require.NotEmpty(t, errs)
		for _, e := range errs {
			assert.Equal(t, "c.yaml", e.File)
			assert.NotEmpty(t, strings.TrimSpace(e.Problem))
			assert.Positive(t, e.Pos.Line, "no line: %v", e)
		}
	})
}
