package busctl

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:hunter2@127.0.0.1:4222", "nats://alice:xxxxx@127.0.0.1:4222"},
		{"nats://s3cr3ttoken@nats.internal:4222", "nats://xxxxx@nats.internal:4222"},
		{"tls://u:p@a:4222,tls://v:hunter2@b:4222", "tls://u:xxxxx@a:4222,tls://v:xxxxx@b:4222"},
		{"kafka://h1:9092,h2:9092", "kafka://h1:9092,h2:9092"},
		{"kafka://h1:9092/path@x", "kafka://h1:9092/xxxxx@x"}, // an @ anywhere errs on the safe side
		{"embedded://nats", "embedded://nats"},
		{"not a url", "not a url"},
		{"nats://alice:hunt,er2xyz@h:4222", "nats://alice:xxxxx@h:4222"},
		{"nats:/alice:hunter2@h", "nats:/alice:xxxxx@h"},
		{"nats//alice:hunter2@h", "nats//alice:xxxxx@h"},
		{"alice:hunter2@h:4222", "alice:xxxxx@h:4222"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, redactURL(tt.in))
			assert.NotContains(t, redactURL(tt.in), "hunter2")
		})
	}
}

// The store round-trips, is written 0600 in a 0700 directory, and names
// the saved contexts when asked for one it lacks.
func TestContextStore(t *testing.T) {
	dir := t.TempDir()
	getenv := func(k string) string {
		if k == "XDG_CONFIG_HOME" {
			return dir
		}
		return ""
	}
	var warnings []string
	warn := func(w string) { warnings = append(warnings, w) }
	s, err := openContexts(getenv, warn)
	require.NoError(t, err)
	assert.Empty(t, s.Contexts, "a missing file is an empty store")
	s.Contexts["prod"] = &Context{Bus: "nats://n:4222", Password: "pw", ProtoPaths: []string{"/p"}}
	s.Current = "prod"
	require.NoError(t, s.save())

	st, err := os.Stat(filepath.Join(dir, "ampybus", "contexts.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(dir, "ampybus"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())

	again, err := openContexts(getenv, warn)
	require.NoError(t, err)
	assert.Equal(t, "prod", again.Current)
	assert.Equal(t, s.Contexts["prod"], again.Contexts["prod"])
	assert.Empty(t, warnings)

	_, err = again.get("paper")
	require.ErrorIs(t, err, ErrNoContext)
	assert.Contains(t, err.Error(), "saved contexts are prod")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "ampybus", "contexts.json"), []byte("{"), 0o600))
	_, err = openContexts(getenv, warn)
	assert.ErrorContains(t, err, "is not a contexts file")
}

// scrub replaces what secrets finds in the URLs the command holds, mistyped
// or not, and any URL's password in other text.
func TestScrub(t *testing.T) {
	tests := []struct {
		name, bus, text, want string
	}{
		{"comma in a password", "nats://alice:hunt,er2xyz@h", "connect to nats://alice:hunt,er2xyz@h: refused", "connect to nats://alice:xxxxx@h: refused"},
		{"mistyped scheme", "nats:/alice:hunter2@h", "parse nats:/alice:hunter2@h: bad", "parse nats:/alice:xxxxx@h: bad"},
		{"a token", "nats://s3cr3t-t0ken-abc@h", "nats://s3cr3t-t0ken-abc@h down", "nats://xxxxx@h down"},
		{"a user name is no token", "nats://admin@h", "user admin denied", "user admin denied"},
		{"another URL's password", "", "dial tls://bob:pw1@x:4222 failed", "dial tls://bob:xxxxx@x:4222 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{global: &globals{bus: tt.bus}}
			assert.Equal(t, tt.want, scrub(tt.text, e.secrets()))
		})
	}
}
