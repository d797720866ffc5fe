package busctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Context is a saved bus, selected by name as `nats context` does: where the
// bus is, how to authenticate, which env and contract commands default to.
// The file holding contexts is the user's alone (mode 0600): it holds
// passwords and tokens, which ampybusctl never prints.
type Context struct {
	Description    string   `json:"description,omitempty"`
	Bus            string   `json:"bus"`
	Env            string   `json:"env,omitempty"`
	User           string   `json:"user,omitempty"`
	Password       string   `json:"password,omitempty"`
	Token          string   `json:"token,omitempty"`
	Creds          string   `json:"creds,omitempty"`
	NkeySeed       string   `json:"nkey_seed,omitempty"`
	TLSCA          string   `json:"tls_ca,omitempty"`
	TLSCert        string   `json:"tls_cert,omitempty"`
	TLSKey         string   `json:"tls_key,omitempty"`
	TLS            bool     `json:"tls,omitempty"`
	TLSInsecure    bool     `json:"tls_insecure,omitempty"`
	SASLMechanism  string   `json:"sasl_mechanism,omitempty"`
	SASLUser       string   `json:"sasl_user,omitempty"`
	SASLPassword   string   `json:"sasl_password,omitempty"`
	Contract       string   `json:"contract,omitempty"`
	ProtoPaths     []string `json:"proto_paths,omitempty"`
	DescriptorSets []string `json:"descriptor_sets,omitempty"`
}

// auth says how a context authenticates, naming no secret.
func (x *Context) auth() string {
	var parts []string
	if redactURL(x.Bus) != x.Bus {
		parts = append(parts, "user info in the URL")
	}
	switch {
	case x.User != "" && x.Password != "":
		parts = append(parts, "user "+x.User+" + password")
	case x.User != "":
		parts = append(parts, "user "+x.User)
	}
	if x.Token != "" {
		parts = append(parts, "token")
	}
	if x.Creds != "" {
		parts = append(parts, "creds "+x.Creds)
	}
	if x.NkeySeed != "" {
		parts = append(parts, "nkey "+x.NkeySeed)
	}
	if x.SASLMechanism != "" {
		parts = append(parts, "sasl "+x.SASLMechanism+" "+x.SASLUser)
	}
	if x.TLSCert != "" {
		parts = append(parts, "mTLS "+x.TLSCert)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// contextStore is the contexts file.
type contextStore struct {
	path     string
	Current  string              `json:"current,omitempty"`
	Contexts map[string]*Context `json:"contexts"`
}

// ErrNoContext is a context name that is not saved.
var ErrNoContext = errors.New("no such context")

// errNoConfigDir is a machine without a home or config directory: it has
// no saved contexts, and commands run without one.
var errNoConfigDir = errors.New("no config directory (set $XDG_CONFIG_HOME or $HOME)")

// configDir is where ampybusctl keeps the user's contexts: the platform's
// user config directory ($XDG_CONFIG_HOME or ~/.config on Linux).
func configDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_CONFIG_HOME"); d != "" && runtime.GOOS != "windows" && runtime.GOOS != "darwin" {
		return filepath.Join(d, "ampybus"), nil
	}
	if h := getenv("HOME"); h != "" && runtime.GOOS != "windows" && runtime.GOOS != "darwin" {
		return filepath.Join(h, ".config", "ampybus"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("contexts: %w: %w", errNoConfigDir, err)
	}
	return filepath.Join(d, "ampybus"), nil
}

// openContexts reads the contexts file; a missing file is an empty store.
// A file others can read is used, with a warning on warn.
func openContexts(getenv func(string) string, warn func(string)) (*contextStore, error) {
	dir, err := configDir(getenv)
	if err != nil {
		return nil, err
	}
	s := &contextStore{path: filepath.Join(dir, "contexts.json"), Contexts: map[string]*Context{}}
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("contexts: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
		warn(fmt.Sprintf("warning: %s holds credentials but others can read it (mode %04o): chmod 600 %s", s.path, st.Mode().Perm(), s.path))
	}
	if err := json.NewDecoder(f).Decode(s); err != nil {
		return nil, fmt.Errorf("contexts: %s is not a contexts file: %w (move it away and add the contexts again)", s.path, err)
	}
	if s.Contexts == nil {
		s.Contexts = map[string]*Context{}
	}
	for name, x := range s.Contexts {
		if x == nil { // a hand edit; get refuses it, rm removes it
			s.Contexts[name] = &Context{}
		}
	}
	return s, nil
}

// get finds a saved context.
func (s *contextStore) get(name string) (*Context, error) {
	x, ok := s.Contexts[name]
	if !ok {
		names := s.names()
		if len(names) == 0 {
			return nil, fmt.Errorf("%w %q: none is saved; add one with ampybusctl context add %s --bus URL", ErrNoContext, name, name)
		}
		return nil, fmt.Errorf("%w %q: saved contexts are %s (ampybusctl context ls)", ErrNoContext, name, strings.Join(names, ", "))
	}
	if x.Bus == "" {
		return nil, fmt.Errorf("context %q in %s has no bus: save it again with ampybusctl context add %s --force --bus URL", name, s.path, name)
	}
	return x, nil
}

func (s *contextStore) names() []string {
	var names []string
	for n := range s.Contexts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// save writes the store readable by its owner only: through a temporary
// file renamed into place, so a crash never leaves half a file.
func (s *contextStore) save() error {
	// A contexts file that is a symlink (dotfiles kept elsewhere) is
	// replaced where it points.
	path := s.path
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	js, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".contexts-*.json")
	if err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("contexts: %w", err)
	}
	if _, err := tmp.Write(append(js, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("contexts: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("contexts: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	return nil
}

// lockContexts takes the contexts file's lock for a read-modify-write, so
// two ampybusctl changing contexts at once never lose one: a lock file made
// exclusively beside it. One older than staleLock was left by a killed run
// and is taken over.
func lockContexts(getenv func(string) string) (unlock func(), err error) {
	dir, err := configDir(getenv)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("contexts: %w", err)
	}
	path := filepath.Join(dir, "contexts.json.lock")
	deadline := time.Now().Add(lockWait)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			return func() { _ = os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("contexts: %w", err)
		}
		if st, err := os.Stat(path); err == nil && time.Since(st.ModTime()) > staleLock {
			_ = os.Remove(path)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("contexts: %s is held by another ampybusctl changing contexts (remove it if none runs)", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockWait bounds the wait for the contexts lock; staleLock is the age past
// which a lock is a killed run's.
const lockWait, staleLock = 5 * time.Second, 30 * time.Second

var contextName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// redactURL hides the password (or token) in the user info of every URL in
// s: a comma-separated server list, a password holding a comma, a URL with
// its scheme mistyped. The rest is shown.
func redactURL(s string) string {
	var b strings.Builder
	last := 0
	for _, u := range userinfos(s) {
		b.WriteString(s[last:u.start])
		if u.user != "" || u.hasPassword {
			b.WriteString(u.user + ":xxxxx")
		} else {
			b.WriteString("xxxxx")
		}
		last = u.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// userinfo is one URL's user info within a string: s[start:end].
type userinfo struct {
	start, end  int
	user        string
	hasPassword bool
	// secret is the password, or the whole user info when it has no
	// colon: a NATS token (nats://TOKEN@host).
	secret string
}

// userinfos finds the user info before each "@" of s, back to the "/"
// before it or the previous "@", whatever the URL around it looks like.
func userinfos(s string) []userinfo {
	var out []userinfo
	from := 0
	for {
		at := strings.IndexByte(s[from:], '@')
		if at < 0 {
			return out
		}
		at += from
		start := from
		if slash := strings.LastIndexByte(s[from:at], '/'); slash >= 0 {
			start = from + slash + 1
		}
		if start < at {
			info := s[start:at]
			u := userinfo{start: start, end: at, secret: info}
			if user, pass, ok := strings.Cut(info, ":"); ok {
				u.user, u.secret, u.hasPassword = user, pass, true
			}
			out = append(out, u)
		}
		from = at + 1
	}
}
