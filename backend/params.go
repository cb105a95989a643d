package backend

import (
	"net/url"
	"time"

	"github.com/go-defender/defender/internal/urlreg"
)

// Params reads the query parameters of a store URL for an Opener. Every
// getter consumes its parameter; Done then reports the parameters that no
// getter consumed, so that a misspelt or unsupported parameter is an error
// rather than silently ignored. Getter errors wrap ErrInvalidURL, name the
// parameter and its value, and show the URL with its password redacted:
//
//	p := backend.NewParams(u)
//	prefix, _ := p.Get("prefix")
//	timeout, err := p.Duration("timeout", time.Second)
//	if err != nil {
//		return nil, err // backend: invalid store URL "mystore://h?timeout=x": parameter timeout="x": want a duration ...
//	}
//	if err := p.Done(); err != nil {
//		return nil, err // unknown query parameter(s) ...
//	}
//
// When a parameter is given several times, the last value counts. A Params
// is not safe for concurrent use.
type Params struct{ p *urlreg.Params }

// NewParams returns the query parameters of u.
func NewParams(u *url.URL) *Params { return &Params{urlreg.NewParams(u, ErrInvalidURL)} }

// Get consumes name and returns its value and whether it was given with a
// non-empty value or as "?name" (value "").
func (p *Params) Get(name string) (string, bool) { return p.p.Get(name) }

// Duration consumes name as a Go duration such as "250ms", "2s" or "1h30m",
// of at least 0. It returns def when name is absent, and def and an
// ErrInvalidURL error naming the parameter when the value is not a duration
// or is negative.
func (p *Params) Duration(name string, def time.Duration) (time.Duration, error) {
	return p.p.Duration(name, def)
}

// Int consumes name as a decimal integer (an optional sign, then digits).
// It returns def when name is absent, and def and an ErrInvalidURL error
// naming the parameter when the value is not an integer. Range checks are
// the caller's: report them with Errorf.
func (p *Params) Int(name string, def int) (int, error) { return p.p.Int(name, def) }

// Bool consumes name as a boolean: 1, t, true, 0, f or false in any case,
// and "?name" alone means true. It returns def when name is absent, and def
// and an ErrInvalidURL error naming the parameter for any other value.
func (p *Params) Bool(name string, def bool) (bool, error) { return p.p.Bool(name, def) }

// Size consumes name as a number of bytes of at least 0: digits, then an
// optional unit in any case: B; KB, MB, GB, TB (powers of 1000); KiB, MiB,
// GiB, TiB or K, M, G, T (powers of 1024). "64KiB" is 65536, "10MB" is
// 10000000. It returns def when name is absent, and def and an
// ErrInvalidURL error naming the parameter when the value is not such a
// size or does not fit in an int64.
func (p *Params) Size(name string, def int64) (int64, error) { return p.p.Size(name, def) }

// Done returns an ErrInvalidURL error that names every parameter no getter
// consumed, sorted, or nil when there is none. Call it after the getters.
func (p *Params) Done() error { return p.p.Done() }
