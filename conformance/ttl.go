package conformance

import (
	"context"
	"time"

	"github.com/go-defender/defender/backend"
)

// Durations of the TTL checks.
const (
	shortTTL  = time.Second             // the TTL of keys that must expire during a check
	step      = 700 * time.Millisecond  // a wait well within a 3s TTL
	slideTTL  = 2 * time.Second         // the sliding counter's TTL
	slideStep = 1200 * time.Millisecond // the time between its increments
)

func (s *suite) ttlChecks() []check {
	return []check{
		{"IncrSetsTTL", func(t tb) {
			// No key is ever left without its TTL.
			b := s.open(t)
			for _, ttl := range []time.Duration{shortTTL, time.Minute, 24 * hour} {
				keys := []string{"t:" + ttl.String() + ":a", "t:" + ttl.String() + ":b"}
				incr(t, b, keys, 1, ttl)
				for _, e := range get(t, b, keys...) {
					checkTTL(t, "after Incr with ttl "+ttl.String(), e, ttl, 0)
				}
			}
		}},
		{"SetBlockSetsTTL", func(t tb) {
			b := s.open(t)
			for _, ttl := range []time.Duration{shortTTL, time.Minute, 24 * hour} {
				key := "t:block:" + ttl.String()
				setBlock(t, b, key, []byte("v"), ttl)
				checkTTL(t, "after SetBlock with ttl "+ttl.String(), get1(t, b, key), ttl, 0)
			}
		}},
		{"Sliding", func(t tb) {
			// Each Incr restarts the TTL: increments spaced by less than
			// the TTL keep the counter alive well past its first TTL.
			b := s.open(t)
			keys := []string{"t:slide:a", "t:slide:b"}
			incr(t, b, keys, 1, slideTTL)
			for i := int64(2); i <= 3; i++ {
				s.advance(slideStep)
				got := incr(t, b, keys, 1, slideTTL)
				if got[0] != i || got[1] != i {
					t.Fatalf("Incr %d, %v after the previous one (ttl %v) = %v, want [%d %d]: the counter expired although each Incr restarts its TTL", i, slideStep, slideTTL, got, i, i)
				}
			}
			s.advance(slideStep) // 3*slideStep > slideTTL+slack after the first Incr
			for _, e := range get(t, b, keys...) {
				if !e.Found || string(e.Value) != "3" {
					t.Fatalf("Get(%q) %v after the last Incr (ttl %v) = %s, want \"3\": each Incr restarts the TTL", e.Key, slideStep, slideTTL, entryValue(e))
				}
				checkTTL(t, "sliding counter", e, slideTTL, slideStep)
			}
			s.advance(slideTTL + slack - slideStep)
			for _, e := range get(t, b, keys...) {
				if e.Found {
					t.Errorf("Get(%q) %v after the last Incr (ttl %v) = %s, want absent", e.Key, slideTTL+slack, slideTTL, entryValue(e))
				}
			}
		}},
		{"Reblock", func(t tb) {
			// SetBlock on a live block restarts its TTL.
			b := s.open(t)
			const ttl, first = 3 * time.Second, 2 * time.Second
			setBlock(t, b, "t:reblock", []byte("first"), ttl)
			s.advance(first)
			setBlock(t, b, "t:reblock", []byte("second"), ttl)
			checkTTL(t, "right after a re-block", get1(t, b, "t:reblock"), ttl, 0)
			// Past the first block's end, well within the second's.
			const wait = ttl + slack - first + 200*time.Millisecond
			s.advance(wait)
			e := get1(t, b, "t:reblock")
			if !e.Found || string(e.Value) != "second" {
				t.Errorf("Get %v after a re-block with ttl %v = %s, want \"second\": a re-block restarts the TTL", wait, ttl, entryValue(e))
			}
		}},
		{"GetNeverExtends", func(t tb) {
			b := s.open(t)
			const ttl = 3 * time.Second
			incr1(t, b, "t:read:counter", 1, ttl)
			setBlock(t, b, "t:read:block", []byte("v"), ttl)
			var elapsed time.Duration
			for _, d := range []time.Duration{step, step, step} {
				s.advance(d)
				elapsed += d
				for _, e := range get(t, b, "t:read:counter", "t:read:block") {
					checkTTL(t, "read "+elapsed.String()+" after the write", e, ttl, elapsed)
				}
				scanAll(t, b, "t:read:", 1, nil)
			}
			s.advance(ttl + slack - elapsed)
			for _, e := range get(t, b, "t:read:counter", "t:read:block") {
				if e.Found {
					t.Errorf("Get(%q) %v after the write (ttl %v) = %s, want absent: Get and Scan never extend a TTL", e.Key, ttl+slack, ttl, entryValue(e))
				}
			}
		}},
		{"Expiry", s.expiry},
	}
}

// expiry writes keys with a short TTL, with TTL 0, and with one switched to
// the other, lets shortTTL+slack pass, and checks each rule in a subtest.
func (s *suite) expiry(t tb) {
	b := s.open(t)
	incr1(t, b, "e:counter", 1, shortTTL)
	setBlock(t, b, "e:block", []byte("v"), shortTTL)
	incr1(t, b, "e:counter0", 1, 0)
	setBlock(t, b, "e:block0", []byte("v"), 0)
	incr1(t, b, "e:counter-to-0", 1, shortTTL)
	incr1(t, b, "e:counter-to-0", 1, 0)
	incr1(t, b, "e:counter-from-0", 1, 0)
	incr1(t, b, "e:counter-from-0", 1, shortTTL)
	setBlock(t, b, "e:block-to-0", []byte("v"), shortTTL)
	setBlock(t, b, "e:block-to-0", []byte("v"), 0)
	setBlock(t, b, "e:block-from-0", []byte("v"), 0)
	setBlock(t, b, "e:block-from-0", []byte("v"), shortTTL)
	incr1(t, b, "e:long", 1, hour)

	expiring := []string{"e:counter", "e:block", "e:counter-from-0", "e:block-from-0"}
	persistent := []string{"e:counter0", "e:block0", "e:counter-to-0", "e:block-to-0"}

	t.Run("BeforeExpiry", func(t tb) {
		for _, e := range get(t, b, expiring...) {
			checkTTL(t, "with ttl "+shortTTL.String(), e, shortTTL, 0)
		}
		for _, e := range get(t, b, persistent...) {
			checkTTL(t, "with ttl 0", e, 0, 0)
		}
	})
	s.advance(shortTTL + slack)
	t.Run("GetExpired", func(t tb) {
		for _, e := range get(t, b, expiring...) {
			if e.Found {
				t.Errorf("Get(%q) %v after a write with ttl %v = %s (TTL %v), want Found == false", e.Key, shortTTL+slack, shortTTL, entryValue(e), e.TTL)
			}
		}
	})
	t.Run("ZeroNeverExpires", func(t tb) {
		for _, e := range get(t, b, "e:counter0", "e:block0") {
			checkTTL(t, "ttl 0, "+(shortTTL+slack).String()+" later", e, 0, 0)
		}
	})
	t.Run("ZeroMakesPersistent", func(t tb) {
		for _, e := range get(t, b, "e:counter-to-0", "e:block-to-0") {
			checkTTL(t, "rewritten with ttl 0", e, 0, 0)
		}
	})
	t.Run("LongTTLKept", func(t tb) {
		checkTTL(t, "ttl 1h", get1(t, b, "e:long"), hour, shortTTL+slack)
	})
	t.Run("ScanSkipsExpired", func(t tb) {
		got := scanAll(t, b, "e:", 0, nil)
		wantKeys(t, "Scan(\"e:\") after the short TTLs ran out", got, append(persistent, "e:long")...)
	})
	t.Run("ExpiredCounterRestarts", func(t tb) {
		if got := incr1(t, b, "e:counter", 1, shortTTL); got != 1 {
			t.Errorf("Incr of an expired counter = %d, want 1 (an expired key is absent)", got)
		}
	})
	t.Run("ExpiredBlockDoesNotBlock", func(t tb) {
		r := backend.Reservation{Blocks: []string{"e:block"}, Counters: []string{"e:reserved"}, TTL: hour}
		if err := backend.Reserve(context.Background(), b, &r); err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		if r.Blocked != -1 || len(r.Counts) != 1 || r.Counts[0] != 1 {
			t.Errorf("Reserve with an expired block = Blocked %d Counts %v, want -1 [1]", r.Blocked, r.Counts)
		}
	})
}
