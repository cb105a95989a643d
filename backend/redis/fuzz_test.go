package redis

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/go-defender/defender/backend"
)

// FuzzParseURL: any URL either parses or fails with ErrInvalidURL, and the
// error never shows the password.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"redis", "rediss", "redis+cluster", "redis+sentinel", "rediss+sentinel", "memcache",
	} {
		f.Add(s, "h:1,h2:2", "/m/0", "prefix=x&dial_timeout=1s", "p@ss:w/rd")
	}
	f.Add("redis", "h", "/x", "bogus=1", "pw")
	f.Add("redis+sentinel", "s:1", "/1/2/3", "master=m&sentinel_password=q", "%zz")
	f.Fuzz(func(t *testing.T, scheme, host, path, query, pass string) {
		const mark = "Zq7Xw"
		u := &url.URL{Scheme: scheme, User: url.UserPassword("user", mark+pass), Host: host, Path: path, RawQuery: query}
		raw := u.String()
		cfg, err := parseURL(raw)
		if err != nil {
			if !errors.Is(err, backend.ErrInvalidURL) {
				t.Fatalf("parseURL(%q): %v, not ErrInvalidURL", raw, err)
			}
			if strings.Contains(err.Error(), mark) && !strings.Contains(query+host+path, mark) {
				t.Fatalf("parseURL(%q): password in error %v", raw, err)
			}
			return
		}
		if cfg.single == nil && cfg.cluster == nil && cfg.failover == nil {
			t.Fatalf("parseURL(%q): no client options", raw)
		}
	})
}

// FuzzSlot: Slot is in range and depends only on the hash tag.
func FuzzSlot(f *testing.F) {
	f.Add("defender:f:{u:alice}", "x")
	f.Add("{}", "{a}")
	f.Fuzz(func(t *testing.T, a, b string) {
		if s := Slot(a); s > 16383 {
			t.Fatalf("Slot(%q) = %d", a, s)
		}
		tag := HashTag(a)
		if !strings.Contains(a, tag) {
			t.Fatalf("HashTag(%q) = %q, not part of the key", a, tag)
		}
		if tag != a && Slot("{"+tag+"}"+b) != Slot(a) {
			t.Fatalf("keys with hash tag %q in different slots", tag)
		}
	})
}
