// Package urlreg is the URL registry shared by backend.Open and
// auditlog.Open: scheme to opener, unknown schemes listing the known ones,
// query parameters consumed one by one with the leftovers as errors, and
// URLs redacted in every message.
package urlreg

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Registry maps URL schemes to openers of T.
type Registry[T any] struct {
	name    string // the package, for panics
	invalid error  // the sentinel every URL error wraps
	mu      sync.RWMutex
	openers map[string]func(context.Context, *url.URL) (T, error)
}

// New returns an empty registry whose errors wrap invalid.
func New[T any](name string, invalid error) *Registry[T] {
	return &Registry[T]{name: name, invalid: invalid, openers: map[string]func(context.Context, *url.URL) (T, error){}}
}

// Register adds open under scheme (case-insensitive). It panics on a nil
// opener or a scheme registered twice.
func (r *Registry[T]) Register(scheme string, open func(context.Context, *url.URL) (T, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	scheme = strings.ToLower(scheme)
	if open == nil {
		panic(r.name + ": Register opener is nil for " + scheme)
	}
	if _, dup := r.openers[scheme]; dup {
		panic(r.name + ": Register called twice for " + scheme)
	}
	r.openers[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func (r *Registry[T]) Schemes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.openers))
	for s := range r.openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open parses rawURL and calls the opener of its scheme. Errors wrap the
// registry's sentinel and hold the URL redacted.
func (r *Registry[T]) Open(ctx context.Context, rawURL string) (T, error) {
	var zero T
	u, err := url.Parse(rawURL)
	if err != nil {
		reason := err.Error()
		if ue, ok := err.(*url.Error); ok {
			reason = ue.Err.Error()
		}
		return zero, fmt.Errorf("%w %q: %s", r.invalid, Redact(rawURL), reason)
	}
	scheme := strings.ToLower(u.Scheme)
	r.mu.RLock()
	open, ok := r.openers[scheme]
	r.mu.RUnlock()
	if !ok {
		known := strings.Join(r.Schemes(), ", ")
		if scheme == "" {
			return zero, fmt.Errorf("%w %q: no scheme (known: %s)", r.invalid, Redact(rawURL), known)
		}
		return zero, fmt.Errorf("%w %q: unknown scheme %q (known: %s)", r.invalid, Redact(rawURL), scheme, known)
	}
	return open(ctx, u)
}

// Redact returns rawURL with any password replaced by "xxxxx". A string
// that does not parse is reduced to its scheme, and one whose password the
// parser may have missed (an "@" after a ":" outside the user information,
// as in a mangled scheme "/://u:pw@h") is reduced too.
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
		if i := strings.Index(rawURL, "://"); i > 0 && u.Scheme != "" {
			return rawURL[:i] + "://(redacted)"
		}
		return "(redacted)"
	}
	return rawURL
}

// Errorf returns an error wrapping invalid about u (redacted) with the
// reason given by format and args.
func Errorf(invalid error, u *url.URL, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", invalid, u.Redacted(), fmt.Sprintf(format, args...))
}

// Params helps an opener consume query parameters: each Get removes the
// name, and Done reports any left over as an error.
type Params struct {
	u       *url.URL
	vals    url.Values
	invalid error
}

// NewParams returns the query parameters of u; Done's error wraps invalid.
func NewParams(u *url.URL, invalid error) *Params {
	return &Params{u: u, vals: u.Query(), invalid: invalid}
}

// Get returns the last value of name and whether it was present, and marks
// name as consumed.
func (p *Params) Get(name string) (string, bool) {
	v, ok := p.vals[name]
	delete(p.vals, name)
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// Done returns an error naming the parameters nobody consumed, or nil.
func (p *Params) Done() error {
	if len(p.vals) == 0 {
		return nil
	}
	names := make([]string, 0, len(p.vals))
	for n := range p.vals {
		names = append(names, n)
	}
	sort.Strings(names)
	return Errorf(p.invalid, p.u, "unknown query parameter(s) %s", strings.Join(names, ", "))
}

// paramErr returns an error about parameter name of p's URL.
func (p *Params) paramErr(name, v, want string) error {
	return Errorf(p.invalid, p.u, "parameter %s=%q: %s", name, v, want)
}

// Duration consumes name as a Go duration (such as "250ms" or "2s") of at
// least 0; def when absent.
func (p *Params) Duration(name string, def time.Duration) (time.Duration, error) {
	v, ok := p.Get(name)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return def, p.paramErr(name, v, "want a duration such as 250ms or 2s, not negative")
	}
	return d, nil
}

// Int consumes name as a decimal integer; def when absent.
func (p *Params) Int(name string, def int) (int, error) {
	v, ok := p.Get(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, p.paramErr(name, v, "want an integer")
	}
	return n, nil
}

// Bool consumes name as a boolean (1, t, true, 0, f, false, any case); a
// name given without a value ("?nosync") is true; def when absent.
func (p *Params) Bool(name string, def bool) (bool, error) {
	v, ok := p.Get(name)
	if !ok {
		return def, nil
	}
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def, p.paramErr(name, v, "want true or false")
	}
	return b, nil
}

// sizeUnits are the suffixes Size accepts, lower-cased, longest first.
var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// Size consumes name as a number of bytes of at least 0: digits with an
// optional unit, KB MB GB TB (powers of 1000), KiB MiB GiB TiB or K M G T
// (powers of 1024), B (bytes), in any case; def when absent.
func (p *Params) Size(name string, def int64) (int64, error) {
	v, ok := p.Get(name)
	if !ok {
		return def, nil
	}
	num, factor := strings.ToLower(strings.TrimSpace(v)), int64(1)
	for _, u := range sizeUnits {
		if rest, found := strings.CutSuffix(num, u.suffix); found {
			num, factor = strings.TrimSpace(rest), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/factor {
		return def, p.paramErr(name, v, "want a size in bytes such as 4096, 64KiB or 10MB")
	}
	return n * factor, nil
}
