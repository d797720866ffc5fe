package output_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/gen/output"
)

// Write and Check serve every output, whatever its comment syntax: a file
// whose first line carries the marker is the generator's to replace or
// remove; any other file is left alone.
func TestWriteAndCheckAnyOutput(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"bus.go":         []byte("// " + output.Marker + "\npackage bus\n"),
		"docs/topics.md": []byte("<!-- " + output.Marker + " -->\n# Topics\n"),
		"python/ampy.py": []byte("# " + output.Marker + "\nTOPICS = []\n"),
		"acl/users.yaml": []byte("# " + output.Marker + "\nusers: []\n"),
	}
	r, err := output.Write(dir, files)
	require.NoError(t, err)
	assert.Len(t, r.Written, 4)
	diff, err := output.Check(dir, files)
	require.NoError(t, err)
	assert.Empty(t, diff)

	// A hand-written file beside them stays; a generated one no longer
	// produced goes, and Check reports both kinds of drift first.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "docs", "notes.md"), []byte("# my notes\n"), 0o644))
	delete(files, "python/ampy.py")
	files["docs/topics.md"] = []byte("<!-- " + output.Marker + " -->\n# Topics, v2\n")
	diff, err = output.Check(dir, files)
	require.NoError(t, err)
	assert.Contains(t, diff, "--- a/python/ampy.py")
	assert.Contains(t, diff, "+# Topics, v2")
	assert.NotContains(t, diff, "notes.md")
	r, err = output.Write(dir, files)
	require.NoError(t, err)
	assert.Equal(t, []string{"docs/topics.md"}, r.Written)
	assert.Equal(t, []string{"python/ampy.py"}, r.Removed)
	assert.Equal(t, 2, r.Unchanged)
	_, err = os.Stat(filepath.Join(dir, "docs", "notes.md"))
	assert.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "python"))
	assert.True(t, os.IsNotExist(err), "an emptied directory goes too")
}
