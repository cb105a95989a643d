package backend

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Opener opens a Backend from a parsed URL whose scheme it registered for.
// It must reject query parameters it does not know (see Params) and must not
// put the password of u in any error (use Redact).
type Opener func(ctx context.Context, u *url.URL) (Backend, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a backend available under scheme to Open. Backends call it
// from an init function, so importing a backend package (for its side effect
// if need be) is enough. Register panics if scheme is registered twice or
// open is nil.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	scheme = strings.ToLower(scheme)
	if open == nil {
		panic("backend: Register opener is nil for " + scheme)
	}
	if _, dup := registry[scheme]; dup {
		panic("backend: Register called twice for " + scheme)
	}
	registry[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open opens the backend that rawURL names, for example "memory://",
// "bolt:///var/lib/defender/defender.db" or "redis://localhost:6379/0".
// An unknown scheme is an ErrInvalidURL error that lists the known ones.
// Errors never contain the URL's password.
func Open(ctx context.Context, rawURL string) (Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidURL, Redact(rawURL), redactErr(err, rawURL))
	}
	scheme := strings.ToLower(u.Scheme)
	registryMu.RLock()
	open, ok := registry[scheme]
	registryMu.RUnlock()
	if !ok {
		if scheme == "" {
			return nil, fmt.Errorf("%w %q: no scheme (known: %s)", ErrInvalidURL, Redact(rawURL), strings.Join(Schemes(), ", "))
		}
		return nil, fmt.Errorf("%w %q: unknown scheme %q (known: %s)", ErrInvalidURL, Redact(rawURL), scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}

// Redact returns rawURL with any password replaced by "xxxxx", suitable for
// logs and error messages. A string that does not parse as a URL is reduced
// to its scheme, so that nothing secret leaks from it either.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		if i := strings.Index(rawURL, "://"); i > 0 {
			return rawURL[:i] + "://(unparsable)"
		}
		return "(unparsable)"
	}
	if _, has := u.User.Password(); has {
		return u.Redacted()
	}
	rest := rawURL
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 && strings.Contains(rest[:at], ":") {
		// Something before an "@" that the parser did not read as a
		// password (a mangled scheme such as "/://u:pw@h") may be one.
		if i := strings.Index(rawURL, "://"); i > 0 && u.Scheme != "" {
			return rawURL[:i] + "://(redacted)"
		}
		return "(redacted)"
	}
	return rawURL
}

// redactErr keeps url.Parse's reason but drops the URL it quotes.
func redactErr(err error, rawURL string) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return strings.ReplaceAll(err.Error(), rawURL, Redact(rawURL))
}

// Params helps an Opener consume query parameters: each Get or Has removes
// the name, and Done reports any left over as an ErrInvalidURL error.
type Params struct {
	u    *url.URL
	vals url.Values
}

// NewParams returns the query parameters of u.
func NewParams(u *url.URL) *Params {
	return &Params{u: u, vals: u.Query()}
}

// Get returns the last value of name and whether it was present.
func (p *Params) Get(name string) (string, bool) {
	v, ok := p.vals[name]
	delete(p.vals, name)
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// Done returns an ErrInvalidURL error naming the parameters nobody consumed,
// or nil.
func (p *Params) Done() error {
	if len(p.vals) == 0 {
		return nil
	}
	names := make([]string, 0, len(p.vals))
	for n := range p.vals {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Errorf("%w %q: unknown query parameter(s) %s", ErrInvalidURL, p.u.Redacted(), strings.Join(names, ", "))
}

// Errorf returns an ErrInvalidURL error about u (redacted) with the reason
// given by format and args.
func Errorf(u *url.URL, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidURL, u.Redacted(), fmt.Sprintf(format, args...))
}

// CheckKey returns an ErrInvalid error unless key obeys the key rules of
// MaxKeyLen. Backends call it on every key they are given.
func CheckKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key length %d not in 1..%d", ErrInvalid, len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= 0x20 || c >= 0x7f {
			return fmt.Errorf("%w: key %q has byte 0x%02x at %d", ErrInvalid, key, c, i)
		}
	}
	return nil
}

// CheckTTL returns an ErrInvalid error for a negative ttl.
func CheckTTL(ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("%w: negative ttl %v", ErrInvalid, ttl)
	}
	return nil
}
