package backend

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func init() {
	Register("testscheme", func(_ context.Context, u *url.URL) (Backend, error) {
		p := NewParams(u)
		if v, ok := p.Get("fail"); ok {
			return nil, Errorf(u, "asked to fail: %s", v)
		}
		if err := p.Done(); err != nil {
			return nil, err
		}
		return nil, nil
	})
}

func TestOpenUnknownSchemeListsKnown(t *testing.T) {
	_, err := Open(context.Background(), "nosuch://user:s3cret@host/x")
	if !errors.Is(err, ErrInvalidURL) || !strings.Contains(err.Error(), "testscheme") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
	_, err = Open(context.Background(), "just-a-path")
	if !errors.Is(err, ErrInvalidURL) || !strings.Contains(err.Error(), "no scheme") {
		t.Fatalf("err = %v", err)
	}
	_, err = Open(context.Background(), "redis://user:p%zzw@host")
	if !errors.Is(err, ErrInvalidURL) || strings.Contains(err.Error(), "p%zzw") {
		t.Fatalf("unparsable URL leaked its password: %v", err)
	}
}

func TestOpenParams(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "TestScheme://h"); err != nil {
		t.Fatalf("scheme must be case-insensitive: %v", err)
	}
	_, err := Open(ctx, "testscheme://u:pw@h?zzz=1&aaa=2")
	if !errors.Is(err, ErrInvalidURL) || !strings.Contains(err.Error(), "aaa, zzz") || strings.Contains(err.Error(), "pw@") {
		t.Fatalf("unknown params: %v", err)
	}
	_, err = Open(ctx, "testscheme://u:pw@h?fail=yes")
	if !errors.Is(err, ErrInvalidURL) || !strings.Contains(err.Error(), "asked to fail: yes") || strings.Contains(err.Error(), ":pw@") {
		t.Fatalf("Errorf: %v", err)
	}
}

func TestRegisterPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"duplicate": func() { Register("testscheme", func(context.Context, *url.URL) (Backend, error) { return nil, nil }) },
		"nil":       func() { Register("other", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://user:secret@h:6379/0": "redis://user:xxxxx@h:6379/0",
		"memory://":                    "memory://",
		"redis://u:p%zz@h":             "redis://(unparsable)",
		"%zz":                          "(unparsable)",
		"/://u:pw@h":                   "(redacted)",
		"#://u:pw@h":                   "(redacted)",
		"redis://user@h":               "redis://user@h",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckKeyAndTTL(t *testing.T) {
	for _, k := range []string{"", strings.Repeat("k", MaxKeyLen+1), "a b", "a\x00", "a\x7f", "é"} {
		if err := CheckKey(k); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckKey(%q) = %v", k, err)
		}
	}
	if err := CheckKey(strings.Repeat("k", MaxKeyLen)); err != nil {
		t.Error(err)
	}
	if err := CheckTTL(-1); !errors.Is(err, ErrInvalid) {
		t.Error("negative ttl accepted")
	}
	if err := CheckTTL(0); err != nil {
		t.Error(err)
	}
}

func FuzzOpenURL(f *testing.F) {
	for _, s := range []string{"testscheme://h?x=1", "redis://u:pw@h:1/0", "memcached://a,b", "bolt:///tmp/x", "%", "a://[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		b, err := Open(context.Background(), raw)
		if err == nil {
			if b != nil {
				b.Close()
			}
			return
		}
		if !errors.Is(err, ErrInvalidURL) {
			t.Fatalf("error %v is not ErrInvalidURL", err)
		}
		if u, perr := url.Parse(raw); perr == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && len(pw) > 3 && strings.Contains(err.Error(), pw) && !strings.Contains(Redact(raw), pw) {
				t.Fatalf("password leaked: %v", err)
			}
		}
	})
}

func TestOpenNeverLeaksAPasswordWithoutScheme(t *testing.T) {
	for _, raw := range []string{"/://u:Zq7Xw0@h", "#://u:Zq7Xw0@h", "//@://user:Zq7Xw0@0/0?0"} {
		_, err := Open(context.Background(), raw)
		if err == nil || strings.Contains(err.Error(), "Zq7Xw0") {
			t.Errorf("Open(%q) = %v", raw, err)
		}
	}
}

// slowValid is the byte-at-a-time key rule that validKey speeds up.
func slowValid(k string) bool {
	if len(k) == 0 || len(k) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func TestValidKeyAgreesWithTheRule(t *testing.T) {
	bases := []string{"a", "abcdefg", "abcdefgh", "abcdefghijklmnopq", strings.Repeat("~", MaxKeyLen)}
	for _, base := range bases {
		for pos := range len(base) {
			for c := 0; c < 256; c++ {
				k := []byte(base)
				k[pos] = byte(c)
				if got, want := validKey(string(k)), slowValid(string(k)); got != want {
					t.Fatalf("validKey(%q) = %v, want %v", k, got, want)
				}
			}
		}
	}
	for _, k := range []string{"", strings.Repeat("a", MaxKeyLen+1)} {
		if validKey(k) || CheckKey(k) == nil {
			t.Fatalf("key of length %d accepted", len(k))
		}
	}
	if err := CheckKeys([]string{"ok", "not ok"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "0x20") {
		t.Fatalf("CheckKeys: %v", err)
	}
}

// FuzzValidKey checks the word-at-a-time key check against the rule.
func FuzzValidKey(f *testing.F) {
	for _, s := range []string{"", "a", "defender:f:ip:203.0.113.7", "a b", "\x7f", "\x80abcdefgh", strings.Repeat("~", 201)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if got, want := validKey(k), slowValid(k); got != want {
			t.Fatalf("validKey(%q) = %v, want %v", k, got, want)
		}
		if (CheckKey(k) == nil) != slowValid(k) {
			t.Fatalf("CheckKey(%q) disagrees with the rule", k)
		}
	})
}
