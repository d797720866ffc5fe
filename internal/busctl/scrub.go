package busctl

import (
	"io"
	"regexp"
	"strings"
)

// scrubber writes through to w with the passwords and tokens the command
// was given replaced: an error or a runtime log that quotes a URL or an
// option never shows them.
type scrubber struct {
	w       io.Writer
	secrets func() []string
}

func (s *scrubber) Write(p []byte) (int, error) {
	if _, err := io.WriteString(s.w, scrub(string(p), s.secrets())); err != nil {
		return 0, err
	}
	return len(p), nil
}

// urlPassword is a password in a URL's user info.
var urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:,]*):[^\s/@]+@`)

// scrub replaces each secret, and any password in a URL, with xxxxx.
// Secrets under three characters are left: replacing them would garble
// the text more than it would hide.
func scrub(text string, secrets []string) string {
	for _, s := range secrets {
		if len(s) >= 3 {
			text = strings.ReplaceAll(text, s, "xxxxx")
		}
	}
	return urlPassword.ReplaceAllString(text, "$1:xxxxx@")
}

// secrets are the passwords and tokens the command holds: flags,
// environment and context alike, and those inside the bus URL. A URL's
// lone user info is a NATS token, and scrubbed only when it is as long as
// a token is: a user name such as "admin" would blank every "admin".
func (e *env) secrets() []string {
	g := e.global
	if g == nil {
		return nil
	}
	out := []string{g.pass, g.token, g.saslPw}
	for _, u := range []string{g.bus, g.natsURL, g.brokers} {
		for _, info := range userinfos(u) {
			if info.hasPassword || len(info.secret) >= 8 {
				out = append(out, info.secret)
			}
		}
	}
	return out
}
