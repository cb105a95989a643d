package conformance

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-defender/defender/backend"
)

// fill writes n counters "<prefix><i>" (value i+1) and returns their keys.
func fill(t tb, b backend.Backend, prefix string, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	for i := 0; i < n; i += 10 {
		end := min(i+10, n)
		incr(t, b, keys[i:end], 1, hour)
	}
	for i := range keys {
		if i > 0 {
			incr(t, b, keys[i:i+1], int64(i), hour)
		}
	}
	return keys
}

func (s *suite) scanChecks() []check {
	return []check{
		{"Prefix", func(t tb) {
			// The prefix is a byte prefix: "a:" never returns "ab:...".
			b := s.open(t)
			incr(t, b, []string{"a:1", "a:2", "a:x:3", "ab:1", "ab", "a", "b:a:1", "A:1", "a;1"}, 1, hour)
			wantKeys(t, "Scan(\"a:\")", scanAll(t, b, "a:", 0, nil), "a:1", "a:2", "a:x:3")
			wantKeys(t, "Scan(\"a:x:\")", scanAll(t, b, "a:x:", 0, nil), "a:x:3")
			wantKeys(t, "Scan(\"ab\")", scanAll(t, b, "ab", 0, nil), "ab:1", "ab")
			wantKeys(t, "Scan(\"a:1\")", scanAll(t, b, "a:1", 0, nil), "a:1")
			wantKeys(t, "Scan(\"c:\")", scanAll(t, b, "c:", 0, nil))
		}},
		{"EmptyPrefix", func(t tb) {
			// Prefix "" lists every key of the backend.
			b := s.open(t)
			keys := []string{"x:1", "y:2", "z"}
			incr(t, b, keys, 1, hour)
			wantKeys(t, "Scan(\"\")", scanAll(t, b, "", 0, nil), keys...)
		}},
		{"Pagination", func(t tb) {
			// Every key is returned at least once, whatever the page size,
			// and no page is larger than the limit.
			b := s.open(t)
			keys := fill(t, b, "pg:", 57)
			incr(t, b, []string{"pf:1", "ph:1"}, 1, hour) // neighbours that must not show
			for _, limit := range []int{1, 2, 3, 5, 10, 56, 57, 58, 1000, 0, -1} {
				t.Run("limit="+strconv.Itoa(limit), func(t tb) {
					wantKeys(t, fmt.Sprintf("Scan(\"pg:\", limit %d)", limit), scanAll(t, b, "pg:", limit, nil), keys...)
				})
			}
		}},
		{"ValuesAndTTLs", func(t tb) {
			// Entries carry Value and TTL as Get would.
			b := s.open(t)
			incr1(t, b, "vt:counter", 7, time.Minute)
			incr1(t, b, "vt:counter0", -2, 0)
			setBlock(t, b, "vt:block", []byte("blocked!"), time.Minute)
			setBlock(t, b, "vt:block0", []byte("forever"), 0)
			got := scanAll(t, b, "vt:", 2, nil)
			want := []struct {
				key, value string
				ttl        time.Duration
			}{
				{"vt:counter", "7", time.Minute},
				{"vt:counter0", "-2", 0},
				{"vt:block", "blocked!", time.Minute},
				{"vt:block0", "forever", 0},
			}
			for _, w := range want {
				e, ok := got[w.key]
				if !ok {
					t.Errorf("Scan(\"vt:\") did not return %q", w.key)
					continue
				}
				if string(e.Value) != w.value {
					t.Errorf("Scan entry %q has Value %q, want %q", w.key, e.Value, w.value)
				}
				checkTTL(t, "Scan entry", e, w.ttl, 0)
			}
		}},
		{"DeleteDuringScan", func(t tb) {
			// Keys deleted while a scan runs may or may not be returned;
			// every key that stays is returned.
			b := s.open(t)
			keys := fill(t, b, "dd:", 40)
			var stay, gone []string
			for i, k := range keys {
				if i%3 == 1 {
					gone = append(gone, k)
				} else {
					stay = append(stay, k)
				}
			}
			got := scanAll(t, b, "dd:", 4, func(page int) {
				if page == 0 {
					del(t, b, gone...)
				}
			})
			for _, k := range stay {
				if _, ok := got[k]; !ok {
					t.Errorf("Scan with deletions on the way missed %q, which was never deleted", k)
				}
			}
		}},
		{"WriteDuringScan", func(t tb) {
			// Keys written while a scan runs may or may not be returned;
			// every key that exists for the whole scan is.
			b := s.open(t)
			keys := fill(t, b, "wd:", 30)
			got := scanAll(t, b, "wd:", 4, func(page int) {
				incr(t, b, []string{fmt.Sprintf("wd:%03d:new", page), fmt.Sprintf("wd:new:%03d", page)}, 1, hour)
				incr(t, b, keys[page%len(keys):page%len(keys)+1], 1, hour)
			})
			for _, k := range keys {
				if _, ok := got[k]; !ok {
					t.Errorf("Scan with writes on the way missed %q", k)
				}
			}
		}},
		{"InvalidPrefix", func(t tb) {
			// A prefix is "" or obeys the key rules (printable ASCII, at
			// most backend.MaxKeyLen bytes). No key starts with any other
			// prefix: Scan fails with ErrInvalid (preferably: see
			// backend.CheckPrefix), or returns no entry and next "".
			// Never a key, never another error.
			b := s.open(t)
			incr1(t, b, "a", 1, hour)
			for _, p := range []string{"a b", "a\tb", "a\x00", "a\x7f", "caf\u00e9", strings.Repeat("a", backend.MaxKeyLen+1)} {
				es, next, err := b.Scan(ctx(t), p, "", 10)
				if err != nil && !isErr(err, backend.ErrInvalid) {
					t.Errorf("Scan(prefix %q): err = %v, want nil or an error wrapping %v", p, err, backend.ErrInvalid)
				}
				if err == nil && (len(es) != 0 || next != "") {
					t.Errorf("Scan(prefix %q) = %d entries, next %q; want an error wrapping %v, or no entry and next \"\"", p, len(es), next, backend.ErrInvalid)
				}
			}
		}},
		{"Empty", func(t tb) {
			// A scan that matches nothing returns no entries and ends.
			b := s.open(t)
			wantKeys(t, "Scan(\"\") of a fresh backend", scanAll(t, b, "", 0, nil))
			incr1(t, b, "em:1", 1, hour)
			wantKeys(t, "Scan(\"none:\")", scanAll(t, b, "none:", 0, nil))
			es, next, err := b.Scan(ctx(t), "none:", "", 10)
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if len(es) != 0 {
				t.Errorf("Scan(\"none:\") returned %d entries, want none", len(es))
			}
			_ = next // may be non-empty: a page may hold none while more remain
		}},
	}
}

func (s *suite) deleteChecks() []check {
	return []check{
		{"Absent", func(t tb) {
			b := s.open(t)
			del(t, b, "d:absent")
			del(t, b, "d:absent", "d:absent2")
		}},
		{"NoKeys", func(t tb) {
			b := s.open(t)
			del(t, b)
		}},
		{"Several", func(t tb) {
			b := s.open(t)
			incr(t, b, []string{"d:1", "d:2", "d:3"}, 1, hour)
			setBlock(t, b, "d:b", []byte("v"), 0)
			del(t, b, "d:1", "d:b", "d:absent")
			es := get(t, b, "d:1", "d:2", "d:3", "d:b")
			if es[0].Found || es[3].Found || !es[1].Found || !es[2].Found {
				t.Errorf("after Delete(d:1, d:b, d:absent): found = %v %v %v %v, want false true true false", es[0].Found, es[1].Found, es[2].Found, es[3].Found)
			}
			wantKeys(t, "Scan(\"d:\") after Delete", scanAll(t, b, "d:", 0, nil), "d:2", "d:3")
			if got := incr1(t, b, "d:1", 1, hour); got != 1 {
				t.Errorf("Incr of a deleted counter = %d, want 1", got)
			}
		}},
	}
}

func (s *suite) namespaceChecks() []check {
	return []check{
		{"Isolation", func(t tb) {
			// Keys under "ns1:" and "ns2:" never see each other.
			b := s.open(t)
			incr1(t, b, "ns1:x", 1, hour)
			incr1(t, b, "ns2:x", 10, hour)
			setBlock(t, b, "ns1:b", []byte("one"), hour)
			setBlock(t, b, "ns2:b", []byte("two"), hour)
			incr1(t, b, "ns10:x", 100, hour)
			if got := incr1(t, b, "ns1:x", 1, hour); got != 2 {
				t.Errorf("Incr(ns1:x) = %d, want 2", got)
			}
			wantKeys(t, "Scan(\"ns2:\")", scanAll(t, b, "ns2:", 1, nil), "ns2:x", "ns2:b")
			wantKeys(t, "Scan(\"ns1:\")", scanAll(t, b, "ns1:", 1, nil), "ns1:x", "ns1:b")
			del(t, b, "ns1:x", "ns1:b")
			es := get(t, b, "ns2:x", "ns2:b", "ns10:x")
			if string(es[0].Value) != "10" || string(es[1].Value) != "two" || string(es[2].Value) != "100" {
				t.Errorf("after Delete of ns1 keys: ns2:x = %s, ns2:b = %s, ns10:x = %s; want \"10\", \"two\", \"100\"", entryValue(es[0]), entryValue(es[1]), entryValue(es[2]))
			}
			wantKeys(t, "Scan(\"ns1:\") after Delete", scanAll(t, b, "ns1:", 0, nil))
			wantKeys(t, "Scan(\"ns2:\") after Delete of ns1", scanAll(t, b, "ns2:", 0, nil), "ns2:x", "ns2:b")
		}},
	}
}
