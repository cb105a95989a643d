package conformance

import (
	"bytes"
	"strconv"
	"time"

	"github.com/go-defender/defender/backend"
)

const hour = time.Hour

func (s *suite) incrChecks() []check {
	return []check{
		{"AbsentStartsAtZero", func(t tb) {
			b := s.open(t)
			if got := incr1(t, b, "c:a", 1, hour); got != 1 {
				t.Errorf("first Incr(+1) of an absent counter = %d, want 1", got)
			}
			if got := incr1(t, b, "c:b", 5, hour); got != 5 {
				t.Errorf("first Incr(+5) of an absent counter = %d, want 5", got)
			}
			if got := incr1(t, b, "c:a", 1, hour); got != 2 {
				t.Errorf("second Incr(+1) = %d, want 2", got)
			}
		}},
		{"NegativeDelta", func(t tb) {
			b := s.open(t)
			if got := incr1(t, b, "c:neg", -3, hour); got != -3 {
				t.Errorf("Incr(-3) of an absent counter = %d, want -3", got)
			}
			if got := incr1(t, b, "c:neg", 5, hour); got != 2 {
				t.Errorf("Incr(+5) after -3 = %d, want 2", got)
			}
			if got := incr1(t, b, "c:neg", -1, hour); got != 1 {
				t.Errorf("Incr(-1) after 2 = %d, want 1 (a refund)", got)
			}
			if got := incr1(t, b, "c:neg", -2, hour); got != -1 {
				t.Errorf("Incr(-2) after 1 = %d, want -1 (counters go below zero)", got)
			}
		}},
		{"SeveralKeysInOrder", func(t tb) {
			b := s.open(t)
			incr1(t, b, "c:2", 10, hour)
			incr1(t, b, "c:3", 20, hour)
			got := incr(t, b, []string{"c:1", "c:2", "c:3"}, 1, hour)
			want := []int64{1, 11, 21}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("Incr(c:1, c:2, c:3) = %v, want %v (one value per key, in order)", got, want)
					break
				}
			}
			got = incr(t, b, []string{"c:3", "c:1"}, 2, hour)
			if got[0] != 23 || got[1] != 3 {
				t.Errorf("Incr(c:3, c:1) = %v, want [23 3]", got)
			}
		}},
		{"ValueIsDecimal", func(t tb) {
			b := s.open(t)
			incr1(t, b, "c:v", 42, hour)
			incr1(t, b, "c:w", -7, hour)
			incr1(t, b, "c:big", 1<<40, hour)
			es := get(t, b, "c:v", "c:w", "c:big")
			for i, want := range []int64{42, -7, 1 << 40} {
				if !es[i].Found || string(es[i].Value) != strconv.FormatInt(want, 10) {
					t.Errorf("Get(%q) = found %v value %q, want %q", es[i].Key, es[i].Found, es[i].Value, strconv.FormatInt(want, 10))
				}
			}
		}},
		{"NoKeys", func(t tb) {
			b := s.open(t)
			got, err := b.Incr(ctx(t), nil, 1, hour)
			if err != nil || len(got) != 0 {
				t.Errorf("Incr(no keys) = %v, %v; want no values and no error", got, err)
			}
		}},
		{"IncrOnBlock", func(t tb) {
			// A key holds a counter or a block. Incr on a key that holds a
			// live block fails (with ErrInvalid, preferably) and leaves the
			// block as it was: a block is never counted, replaced or
			// shortened by an Incr. The engine never does this; a caller
			// that mixes up its keys gets an error, not a lost block.
			b := s.open(t)
			setBlock(t, b, "c:blocked", []byte("blocked"), hour)
			if got, err := b.Incr(ctx(t), []string{"c:blocked"}, 1, time.Minute); err == nil {
				t.Errorf("Incr on a key that holds a block = %v, nil; want an error (wrapping %v)", got, backend.ErrInvalid)
			}
			e := get1(t, b, "c:blocked")
			if !e.Found || string(e.Value) != "blocked" {
				t.Errorf("Get of a block after an Incr on it = %s, want \"blocked\": the block must stay as it was", entryValue(e))
			}
			checkTTL(t, "block after an Incr on it", e, hour, 0)
		}},
		{"SetBlockReplacesCounter", func(t tb) {
			// "SetBlock stores value under key ..., replacing any value."
			b := s.open(t)
			incr1(t, b, "k:x", 3, hour)
			setBlock(t, b, "k:x", []byte("blocked"), hour)
			if e := get1(t, b, "k:x"); !e.Found || !bytes.Equal(e.Value, []byte("blocked")) {
				t.Errorf("SetBlock over a counter: Get = found %v value %q, want %q", e.Found, e.Value, "blocked")
			}
		}},
	}
}

func (s *suite) getChecks() []check {
	return []check{
		{"Absent", func(t tb) {
			b := s.open(t)
			incr1(t, b, "g:present", 1, hour)
			es := get(t, b, "g:absent", "g:present", "g:other")
			if es[0].Found || es[2].Found {
				t.Errorf("Get of absent keys: Found = %v, %v; want false (absence is a result)", es[0].Found, es[2].Found)
			}
			if !es[1].Found || string(es[1].Value) != "1" {
				t.Errorf("Get of a live counter = found %v value %q, want \"1\"", es[1].Found, es[1].Value)
			}
		}},
		{"NoKeys", func(t tb) {
			b := s.open(t)
			es, err := b.Get(ctx(t), nil)
			if err != nil || len(es) != 0 {
				t.Errorf("Get(no keys) = %v, %v; want no entries and no error", es, err)
			}
		}},
		{"BlockValues", func(t tb) {
			b := s.open(t)
			binary := make([]byte, 256)
			for i := range binary {
				binary[i] = byte(i)
			}
			cases := []struct {
				key   string
				value []byte
			}{
				{"v:text", []byte(`{"count":4,"kind":"ip"}`)},
				{"v:binary", binary},
				{"v:empty", []byte{}},
			}
			for _, c := range cases {
				setBlock(t, b, c.key, c.value, hour)
			}
			for _, c := range cases {
				e := get1(t, b, c.key)
				if !e.Found || !bytes.Equal(e.Value, c.value) {
					t.Errorf("Get(%q) = found %v value %q, want the value given to SetBlock %q", c.key, e.Found, e.Value, c.value)
				}
			}
		}},
		{"ReplacesValue", func(t tb) {
			b := s.open(t)
			setBlock(t, b, "v:k", []byte("one"), hour)
			setBlock(t, b, "v:k", []byte("two"), hour)
			if e := get1(t, b, "v:k"); string(e.Value) != "two" {
				t.Errorf("Get after two SetBlock = %q, want the second value %q", e.Value, "two")
			}
		}},
		{"NoAliasing", func(t tb) {
			b := s.open(t)
			v := []byte("original")
			setBlock(t, b, "v:alias", v, hour)
			copy(v, "XXXXXXXX")
			e := get1(t, b, "v:alias")
			if string(e.Value) != "original" {
				t.Errorf("Get after the caller reused SetBlock's slice = %q, want %q (the store must copy)", e.Value, "original")
			}
			for i := range e.Value {
				e.Value[i] = 'Y'
			}
			if e := get1(t, b, "v:alias"); string(e.Value) != "original" {
				t.Errorf("Get after the caller changed a returned Value = %q, want %q", e.Value, "original")
			}
		}},
	}
}

// entryValue returns e's value for messages.
func entryValue(e backend.Entry) string {
	if !e.Found {
		return "(absent)"
	}
	return strconv.Quote(string(e.Value))
}
