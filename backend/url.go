package backend

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/go-defender/defender/internal/urlreg"
)

// Opener opens a Backend from a parsed URL whose scheme it registered for.
// It must reject query parameters it does not know (see Params) and must not
// put the password of u in any error (use Redact).
type Opener func(ctx context.Context, u *url.URL) (Backend, error)

var registry = urlreg.New[Backend]("backend", ErrInvalidURL)

// Register makes a backend available under scheme to Open. Backends call it
// from an init function, so importing a backend package (for its side effect
// if need be) is enough. Register panics if scheme is registered twice or
// open is nil.
func Register(scheme string, open Opener) { registry.Register(scheme, open) }

// Schemes returns the registered schemes, sorted.
func Schemes() []string { return registry.Schemes() }

// Open opens the backend that rawURL names, for example "memory://",
// "bolt:///var/lib/defender/defender.db" or "redis://localhost:6379/0".
// An unknown scheme is an ErrInvalidURL error that lists the known ones.
// Errors never contain the URL's password.
func Open(ctx context.Context, rawURL string) (Backend, error) { return registry.Open(ctx, rawURL) }

// Redact returns rawURL with any password replaced by "xxxxx", suitable for
// logs and error messages. A string that does not parse as a URL, or whose
// password the parser may have missed, is reduced to its scheme, so that
// nothing secret leaks from it either.
func Redact(rawURL string) string { return urlreg.Redact(rawURL) }

// Errorf returns an ErrInvalidURL error about u (redacted) with the reason
// given by format and args.
func Errorf(u *url.URL, format string, args ...any) error {
	return urlreg.Errorf(ErrInvalidURL, u, format, args...)
}

// CheckKey returns an ErrInvalid error unless key obeys the key rules of
// MaxKeyLen. Backends call it (or CheckKeys) on every key they are given.
func CheckKey(key string) error {
	if validKey(key) {
		return nil
	}
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

// CheckKeys is CheckKey on every key: the first bad one's error.
func CheckKeys(keys []string) error {
	for _, k := range keys {
		if err := CheckKey(k); err != nil {
			return err
		}
	}
	return nil
}

// validKey reports whether k obeys the key rules, eight bytes at a time: it
// runs on every key of every call, the login hot path included.
func validKey(k string) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	n := len(k)
	if n == 0 || n > MaxKeyLen {
		return false
	}
	i := 0
	for ; i+8 <= n; i += 8 {
		b := k[i : i+8]
		w := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		// Some byte < 0x21, or some byte > 0x7e (exact tests for bytes <
		// 128; a byte >= 0x80 sets the high bit of the second one).
		if (w-lo*0x21)&^w&hi != 0 || ((w+lo)|w)&hi != 0 {
			return false
		}
	}
	for ; i < n; i++ {
		if c := k[i]; c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// CheckTTL returns an ErrInvalid error for a negative ttl.
func CheckTTL(ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("%w: negative ttl %v", ErrInvalid, ttl)
	}
	return nil
}
