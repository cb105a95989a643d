package conformance

import (
	"strings"
	"time"
	"unsafe"

	"github.com/go-defender/defender/backend"
)

// globChars are the characters that some stores give a meaning in patterns
// (Redis MATCH, shell globs, URL escapes, key separators).
const globChars = ":%*?[]{}\\^!-"

// printable is every byte a key may hold, 0x21..0x7e.
func printable() string {
	var sb strings.Builder
	for c := byte(0x21); c <= 0x7e; c++ {
		sb.WriteByte(c)
	}
	return sb.String()
}

// oddKeys returns keys made of the characters that stores treat specially,
// and keys of the maximum length.
func oddKeys() []string {
	keys := []string{
		"o:a:b%c*d?e[f]g{h}i",
		"o:%2A%3F%5B",
		"o:*",
		"o:?",
		"o:[",
		"o:]",
		"o:[a-z]",
		"o:{a,b}",
		"o:\\*",
		"o:" + printable(),
	}
	for _, c := range globChars {
		keys = append(keys, "o:x"+string(c)+"y")
	}
	long := "o:max:" + printable()
	for len(long) < backend.MaxKeyLen {
		long += printable()
	}
	keys = append(keys, long[:backend.MaxKeyLen], "o:max2:"+strings.Repeat("*", backend.MaxKeyLen-7))
	return dedupe(keys)
}

func dedupe(keys []string) []string {
	seen := map[string]bool{}
	out := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func (s *suite) keyChecks() []check {
	return []check{
		{"Borrowed", func(t tb) {
			// A backend that borrows keys (backend.KeyBorrower) keeps none
			// of the strings it is passed: the buffer behind them is
			// written again after each call, as the engine does.
			b := s.open(t)
			if !backend.BorrowsKeys(b) {
				return
			}
			buf := make([]byte, 0, 64)
			lend := func(k string) string {
				buf = append(buf[:0], k...)
				return unsafe.String(&buf[0], len(buf))
			}
			scrub := func() {
				for i := range buf[:cap(buf)] {
					buf[:cap(buf)][i] = 'z'
				}
			}
			incr(t, b, []string{lend("lend:count")}, 1, hour)
			scrub()
			setBlock(t, b, lend("lend:block"), []byte("v"), hour)
			scrub()
			r := backend.Reservation{Blocks: []string{lend("lend:b2")}, TTL: hour}
			r.Counters = []string{"lend:c2"}
			reserve(t, b, &r)
			scrub()
			es := get(t, b, "lend:count", "lend:block")
			if !es[0].Found || !es[1].Found {
				t.Fatalf("after its key's buffer was written again, a key is lost (found %v %v): the backend kept the caller's string", es[0].Found, es[1].Found)
			}
			got := scanAll(t, b, "", 0, nil)
			for k := range got {
				if strings.Contains(k, "zz") {
					t.Errorf("Scan returns %q: the backend kept the caller's string, written since", k)
				}
			}
		}},
		{"RoundTrip", func(t tb) {
			// Keys with : % * ? [ ] { } and of the maximum length go
			// through every method unchanged and never match each other.
			b := s.open(t)
			keys := oddKeys()
			counts := incr(t, b, keys, 1, hour)
			for i, n := range counts {
				if n != 1 {
					t.Errorf("Incr(%q) = %d, want 1: it shared a counter with another key", keys[i], n)
				}
			}
			es := get(t, b, keys...)
			for i, e := range es {
				if !e.Found || string(e.Value) != "1" {
					t.Errorf("Get(%q) after Incr = %s, want \"1\"", keys[i], entryValue(e))
				}
			}
			wantKeys(t, "Scan(\"o:\")", scanAll(t, b, "o:", 3, nil), keys...)
			for _, k := range keys {
				setBlock(t, b, k, []byte("block "+k), hour)
			}
			for i, e := range get(t, b, keys...) {
				if !e.Found || string(e.Value) != "block "+keys[i] {
					t.Errorf("Get(%q) after SetBlock = %s, want %q", keys[i], entryValue(e), "block "+keys[i])
				}
			}
			got := scanAll(t, b, "o:", 0, nil)
			wantKeys(t, "Scan(\"o:\") after SetBlock", got, keys...)
			for _, k := range keys {
				if e := got[k]; string(e.Value) != "block "+k {
					t.Errorf("Scan entry %q = %s, want %q", k, entryValue(e), "block "+k)
				}
			}
			del(t, b, keys[0], keys[len(keys)-1])
			wantKeys(t, "Scan(\"o:\") after Delete of two keys", scanAll(t, b, "o:", 0, nil), keys[1:len(keys)-1]...)
			del(t, b, keys...)
			wantKeys(t, "Scan(\"o:\") after Delete of all keys", scanAll(t, b, "o:", 0, nil))
		}},
		{"GlobPrefixIsLiteral", func(t tb) {
			// Keys that differ in one glob character are distinct, and a
			// prefix holding glob characters matches literally.
			b := s.open(t)
			var keys []string
			for _, c := range globChars {
				keys = append(keys, "p:x"+string(c)+"y", "p:x"+string(c)+"y:more")
			}
			keys = append(keys, "p:xay", "p:xy", "p:x")
			incr(t, b, keys, 1, hour)
			for _, c := range globChars {
				prefix := "p:x" + string(c)
				wantKeys(t, "Scan("+prefix+")", scanAll(t, b, prefix, 2, nil), prefix+"y", prefix+"y:more")
			}
			wantKeys(t, "Scan(p:x*y:)", scanAll(t, b, "p:x*y:", 0, nil), "p:x*y:more")
			wantKeys(t, "Scan(p:x[a-z]y)", scanAll(t, b, "p:x[a-z]y", 0, nil))
			wantKeys(t, "Scan(p:x?)", scanAll(t, b, "p:x?", 0, nil), "p:x?y", "p:x?y:more")
			wantKeys(t, "Scan(p:)", scanAll(t, b, "p:", 0, nil), keys...)
		}},
		{"Invalid", s.invalidKeys},
		{"NegativeTTL", func(t tb) {
			b := s.open(t)
			if _, err := b.Incr(ctx(t), []string{"n:k"}, 1, -time.Second); !isErr(err, backend.ErrInvalid) {
				t.Errorf("Incr with ttl -1s: err = %v, want %v", err, backend.ErrInvalid)
			}
			if err := b.SetBlock(ctx(t), "n:k", []byte("v"), -time.Nanosecond); !isErr(err, backend.ErrInvalid) {
				t.Errorf("SetBlock with ttl -1ns: err = %v, want %v", err, backend.ErrInvalid)
			}
			if got := scanAll(t, b, "", 0, nil); len(got) != 0 {
				t.Errorf("a rejected call wrote keys %q", keysOf(got))
			}
		}},
	}
}

// invalidKeys checks that every method rejects keys outside the rules of
// backend.MaxKeyLen with ErrInvalid, and writes nothing.
func (s *suite) invalidKeys(t tb) {
	bad := []struct{ name, key string }{
		{"Empty", ""},
		{"TooLong", strings.Repeat("k", backend.MaxKeyLen+1)},
		{"Space", "a b"},
		{"Tab", "a\tb"},
		{"Newline", "a\nb"},
		{"NUL", "a\x00b"},
		{"DEL", "a\x7fb"},
		{"NonASCII", "caf\u00e9"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t tb) {
			b := s.open(t)
			if _, err := b.Incr(ctx(t), []string{c.key}, 1, hour); !isErr(err, backend.ErrInvalid) {
				t.Errorf("Incr(%q): err = %v, want %v", c.key, err, backend.ErrInvalid)
			}
			if _, err := b.Incr(ctx(t), []string{"i:ok", c.key}, 1, hour); !isErr(err, backend.ErrInvalid) {
				t.Errorf("Incr(%q, %q): err = %v, want %v", "i:ok", c.key, err, backend.ErrInvalid)
			}
			if err := b.SetBlock(ctx(t), c.key, []byte("v"), hour); !isErr(err, backend.ErrInvalid) {
				t.Errorf("SetBlock(%q): err = %v, want %v", c.key, err, backend.ErrInvalid)
			}
			if _, err := b.Get(ctx(t), []string{c.key}); !isErr(err, backend.ErrInvalid) {
				t.Errorf("Get(%q): err = %v, want %v", c.key, err, backend.ErrInvalid)
			}
			if err := b.Delete(ctx(t), c.key); !isErr(err, backend.ErrInvalid) {
				t.Errorf("Delete(%q): err = %v, want %v", c.key, err, backend.ErrInvalid)
			}
		})
	}
}
