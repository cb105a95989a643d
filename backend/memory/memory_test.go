package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// clock is a fake clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// open returns a store configured by o that logs nothing unless o has a
// Logger, closed when the test ends.
func open(t testing.TB, o *Options) *Store {
	t.Helper()
	var oo Options
	if o != nil {
		oo = *o
	}
	if oo.Logger == nil {
		oo.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(&oo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openClock(t testing.TB, maxKeys int) (*Store, *clock) {
	c := newClock()
	return open(t, &Options{MaxKeys: maxKeys, Now: c.Now, SweepInterval: -1}), c
}

var bg = context.Background()

func get1(t *testing.T, s *Store, key string) backend.Entry {
	t.Helper()
	es, err := s.Get(bg, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	return es[0]
}

func incr1(t *testing.T, s *Store, key string, delta int64, ttl time.Duration) int64 {
	t.Helper()
	n, err := s.Incr(bg, []string{key}, delta, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return n[0]
}

func TestTTL(t *testing.T) {
	type step struct {
		op      string // incr, block, adv, get
		d       time.Duration
		found   bool
		value   string
		wantTTL time.Duration
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"sliding increment", []step{
			{op: "incr", d: 10 * time.Second},
			{op: "adv", d: 9 * time.Second},
			{op: "get", found: true, value: "1", wantTTL: time.Second},
			{op: "incr", d: 10 * time.Second},
			{op: "adv", d: 9 * time.Second},
			{op: "get", found: true, value: "2", wantTTL: time.Second},
			{op: "adv", d: time.Second},
			{op: "get", found: false},
			{op: "incr", d: 10 * time.Second},
			{op: "get", found: true, value: "1", wantTTL: 10 * time.Second},
		}},
		{"ttl 0 never expires", []step{
			{op: "incr", d: 0},
			{op: "adv", d: 1000 * time.Hour},
			{op: "get", found: true, value: "1", wantTTL: 0},
		}},
		{"re-block restarts the clock", []step{
			{op: "block", d: 10 * time.Second},
			{op: "adv", d: 8 * time.Second},
			{op: "get", found: true, value: "v", wantTTL: 2 * time.Second},
			{op: "block", d: 10 * time.Second},
			{op: "adv", d: 8 * time.Second},
			{op: "get", found: true, value: "v", wantTTL: 2 * time.Second},
			{op: "adv", d: 2 * time.Second},
			{op: "get", found: false},
		}},
		{"permanent block", []step{
			{op: "block", d: 0},
			{op: "adv", d: 1000 * time.Hour},
			{op: "get", found: true, value: "v"},
		}},
		{"expired counter restarts at zero", []step{
			{op: "incr", d: time.Second},
			{op: "incr", d: time.Second},
			{op: "adv", d: time.Second},
			{op: "incr", d: time.Second},
			{op: "get", found: true, value: "1", wantTTL: time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := openClock(t, 0)
			for i, st := range tt.steps {
				switch st.op {
				case "incr":
					incr1(t, s, "k", 1, st.d)
				case "block":
					if err := s.SetBlock(bg, "k", []byte("v"), st.d); err != nil {
						t.Fatal(err)
					}
				case "adv":
					c.Advance(st.d)
				case "get":
					e := get1(t, s, "k")
					if e.Found != st.found || (st.found && (string(e.Value) != st.value || e.TTL != st.wantTTL)) {
						t.Fatalf("step %d: got %+v (value %q), want found=%v value=%q ttl=%v", i, e, e.Value, st.found, st.value, st.wantTTL)
					}
					if e.Key != "k" {
						t.Fatalf("step %d: key %q", i, e.Key)
					}
				}
			}
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	s := open(t, nil)
	long := strings.Repeat("x", backend.MaxKeyLen+1)
	tests := []struct {
		name string
		call func() error
	}{
		{"incr negative ttl", func() error { _, err := s.Incr(bg, []string{"a"}, 1, -1); return err }},
		{"incr empty key", func() error { _, err := s.Incr(bg, []string{""}, 1, 0); return err }},
		{"incr long key", func() error { _, err := s.Incr(bg, []string{long}, 1, 0); return err }},
		{"incr space", func() error { _, err := s.Incr(bg, []string{"a b"}, 1, 0); return err }},
		{"block negative ttl", func() error { return s.SetBlock(bg, "a", nil, -time.Second) }},
		{"block bad key", func() error { return s.SetBlock(bg, "a\n", nil, 0) }},
		{"get bad key", func() error { _, err := s.Get(bg, []string{"ok", ""}); return err }},
		{"delete bad key", func() error { return s.Delete(bg, "\x00") }},
		{"reserve negative ttl", func() error { return s.Reserve(bg, &backend.Reservation{TTL: -1}) }},
		{"reserve bad block", func() error { return s.Reserve(bg, &backend.Reservation{Blocks: []string{""}}) }},
		{"reserve bad counter", func() error { return s.Reserve(bg, &backend.Reservation{Counters: []string{" "}}) }},
		{"block empty durations", func() error { _, err := s.Block(bg, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l"}); return err }},
		{"block negative window", func() error {
			_, err := s.Block(bg, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Window: -1, Durations: []time.Duration{1}})
			return err
		}},
		{"block negative duration", func() error {
			_, err := s.Block(bg, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Durations: []time.Duration{-1}})
			return err
		}},
		{"block bad key", func() error {
			_, err := s.Block(bg, backend.BlockRequest{BlockKey: "b", LockoutsKey: "", Durations: []time.Duration{1}})
			return err
		}},
		{"scan bad cursor", func() error { _, _, err := s.Scan(bg, "", "x1:", 0); return err }},
		{"scan cursor shard out of range", func() error { _, _, err := s.Scan(bg, "", "m64:", 0); return err }},
		{"scan cursor no colon", func() error { _, _, err := s.Scan(bg, "", "m1", 0); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, backend.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := New(&Options{MaxKeys: -1}); !errors.Is(err, backend.ErrInvalid) || !strings.Contains(err.Error(), "MaxKeys") {
		t.Fatalf("New(MaxKeys -1) = %v", err)
	}
}

func TestIncrOnBlockIsInvalid(t *testing.T) {
	s := open(t, nil)
	if err := s.SetBlock(bg, "b", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(bg, []string{"b"}, 1, 0); !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("Incr on a block: %v", err)
	}
	// A counter can be replaced by a block.
	incr1(t, s, "c", 5, 0)
	if err := s.SetBlock(bg, "c", []byte("blk"), 0); err != nil {
		t.Fatal(err)
	}
	if e := get1(t, s, "c"); string(e.Value) != "blk" {
		t.Fatalf("got %q", e.Value)
	}
}

func TestIncrValues(t *testing.T) {
	s := open(t, nil)
	got, err := s.Incr(bg, []string{"a", "b", "a"}, 3, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[3 3 6]" {
		t.Fatalf("got %v", got)
	}
	if n := incr1(t, s, "a", -10, time.Minute); n != -4 {
		t.Fatalf("negative delta: %d", n)
	}
	if e := get1(t, s, "a"); string(e.Value) != "-4" {
		t.Fatalf("value %q", e.Value)
	}
	if e := get1(t, s, "absent"); e.Found || e.Key != "absent" || e.Value != nil || e.TTL != 0 {
		t.Fatalf("absent: %+v", e)
	}
	if err := s.Delete(bg, "a", "absent"); err != nil {
		t.Fatal(err)
	}
	if e := get1(t, s, "a"); e.Found {
		t.Fatal("deleted key found")
	}
}

func TestExactCountsUnderConcurrency(t *testing.T) {
	s := open(t, &Options{MaxKeys: 1000})
	const G, N = 64, 200
	var wg sync.WaitGroup
	for g := range G {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &backend.Reservation{Blocks: []string{"blk"}, Counters: []string{"shared", "g" + strconv.Itoa(g)}, TTL: time.Hour}
			for range N {
				if err := s.Reserve(bg, r); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Incr(bg, []string{"shared2"}, 2, time.Hour); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	es, err := s.Get(bg, []string{"shared", "shared2", "g0", "g63"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{strconv.Itoa(G * N), strconv.Itoa(2 * G * N), strconv.Itoa(N), strconv.Itoa(N)}
	for i, e := range es {
		if string(e.Value) != want[i] {
			t.Errorf("%s = %s, want %s", e.Key, e.Value, want[i])
		}
	}
}

func TestReserve(t *testing.T) {
	s, c := openClock(t, 0)
	r := &backend.Reservation{
		Blocks:   []string{"b:ip", "b:user"},
		Counters: []string{"f:ip", "f:user"},
		TTL:      time.Minute,
		Counts:   make([]int64, 0, 4),
	}
	for want := int64(1); want <= 3; want++ {
		if err := s.Reserve(bg, r); err != nil {
			t.Fatal(err)
		}
		if r.Blocked != -1 || len(r.Counts) != 2 || r.Counts[0] != want || r.Counts[1] != want {
			t.Fatalf("reserve %d: %+v", want, r)
		}
	}
	if err := s.SetBlock(bg, "b:user", []byte("locked"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(bg, r); err != nil {
		t.Fatal(err)
	}
	if r.Blocked != 1 || string(r.Block.Value) != "locked" || r.Block.Key != "b:user" || r.Block.TTL != 10*time.Second || len(r.Counts) != 0 {
		t.Fatalf("blocked reserve: %+v", r)
	}
	if e := get1(t, s, "f:ip"); string(e.Value) != "3" {
		t.Fatalf("a blocked reserve counted: %s", e.Value)
	}
	c.Advance(10 * time.Second)
	if err := s.Reserve(bg, r); err != nil {
		t.Fatal(err)
	}
	if r.Blocked != -1 || r.Counts[0] != 4 {
		t.Fatalf("after expiry: %+v", r)
	}
	// No blocks, no counters.
	empty := &backend.Reservation{}
	if err := s.Reserve(bg, empty); err != nil || empty.Blocked != -1 {
		t.Fatalf("empty reservation: %v %+v", err, empty)
	}
	// Through the package function too.
	if err := backend.Reserve(bg, s, r); err != nil || r.Counts[0] != 5 {
		t.Fatalf("backend.Reserve: %v %+v", err, r)
	}
}

func TestBlockEscalates(t *testing.T) {
	s, c := openClock(t, 0)
	req := backend.BlockRequest{
		BlockKey:    "b:u",
		Value:       []byte("why"),
		CounterKey:  "f:u",
		LockoutsKey: "l:u",
		Window:      time.Hour,
		Durations:   []time.Duration{time.Minute, 10 * time.Minute, 0},
	}
	wants := []time.Duration{time.Minute, 10 * time.Minute, 0, 0}
	for i, want := range wants {
		incr1(t, s, "f:u", 5, time.Hour)
		res, err := backend.Block(bg, s, req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Lockouts != int64(i+1) || res.Duration != want {
			t.Fatalf("lockout %d: %+v, want duration %v", i+1, res, want)
		}
		if e := get1(t, s, "f:u"); e.Found {
			t.Fatalf("lockout %d: counter survived", i+1)
		}
		e := get1(t, s, "b:u")
		if !e.Found || string(e.Value) != "why" || e.TTL != want {
			t.Fatalf("lockout %d: block %+v", i+1, e)
		}
		c.Advance(time.Minute)
	}
	// Without a counter key.
	req.CounterKey = ""
	if _, err := s.Block(bg, req); err != nil {
		t.Fatal(err)
	}
	// The lockout window expires.
	c.Advance(time.Hour)
	if res, err := s.Block(bg, req); err != nil || res.Lockouts != 1 {
		t.Fatalf("after window: %+v %v", res, err)
	}
}

func TestScan(t *testing.T) {
	s, c := openClock(t, 0)
	special := []string{"p:a:b", "p:%41", "p:*", "p:?", "p:[x]", "p:{y}", "p:" + strings.Repeat("~", backend.MaxKeyLen-2)}
	want := map[string]bool{}
	for _, k := range special {
		want[k] = true
		if err := s.SetBlock(bg, k, []byte(k), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 500 {
		k := fmt.Sprintf("p:n%03d", i)
		want[k] = true
		incr1(t, s, k, int64(i), time.Hour)
	}
	for i := range 50 {
		incr1(t, s, fmt.Sprintf("q:%d", i), 1, time.Hour)
		incr1(t, s, fmt.Sprintf("p:gone%d", i), 1, time.Second)
	}
	c.Advance(time.Second)
	for _, limit := range []int{0, 1, 7, 100, 10000} {
		t.Run(fmt.Sprint("limit", limit), func(t *testing.T) {
			got := map[string]int{}
			cursor, pages := "", 0
			for {
				es, next, err := s.Scan(bg, "p:", cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if limit > 0 && len(es) > limit {
					t.Fatalf("page of %d > limit %d", len(es), limit)
				}
				for _, e := range es {
					got[e.Key]++
					if !e.Found || e.TTL != time.Hour-time.Second {
						t.Fatalf("entry %+v", e)
					}
					if strings.HasPrefix(e.Key, "p:n") {
						n, _ := strconv.Atoi(e.Key[3:])
						if string(e.Value) != strconv.Itoa(n) {
							t.Fatalf("%s = %s", e.Key, e.Value)
						}
					} else if string(e.Value) != e.Key {
						t.Fatalf("%s = %s", e.Key, e.Value)
					}
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if len(got) != len(want) {
				t.Fatalf("got %d keys, want %d", len(got), len(want))
			}
			for k, n := range got {
				if !want[k] || n != 1 {
					t.Fatalf("key %q returned %d times (wanted: %v)", k, n, want[k])
				}
			}
		})
	}
	// Glob characters in the prefix are literal.
	es, _, err := s.Scan(bg, "p:*", "", 0)
	if err != nil || len(es) != 1 || es[0].Key != "p:*" {
		t.Fatalf("literal prefix: %v %v", es, err)
	}
}

func TestScanDeleteDuring(t *testing.T) {
	s := open(t, nil)
	for i := range 300 {
		incr1(t, s, fmt.Sprintf("k%03d", i), 1, 0)
	}
	seen := map[string]bool{}
	cursor := ""
	for {
		es, next, err := s.Scan(bg, "k", cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			seen[e.Key] = true
			// Delete this key and an odd one that may come later.
			if err := s.Delete(bg, e.Key); err != nil {
				t.Fatal(err)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 300 {
		t.Fatalf("saw %d keys", len(seen))
	}
	if st := s.Stats(); st.Keys != 0 {
		t.Fatalf("keys left: %d", st.Keys)
	}
}

// TestMemoryPressure floods the store with 10^6 distinct counters under a
// bound of 10^4 keys: the bound holds, every block and lockout count
// survives, and the evictions are counted and logged once.
func TestMemoryPressure(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the other tests
	if testing.Short() {
		t.Skip("floods 10^6 keys")
	}
	var logbuf bytes.Buffer
	c := newClock()
	const maxKeys, blocks, flood = 10_000, 2_000, 1_000_000
	s := open(t, &Options{MaxKeys: maxKeys, Now: c.Now, SweepInterval: -1, Logger: slog.New(slog.NewTextHandler(&logbuf, nil))})
	for i := range blocks {
		req := backend.BlockRequest{
			BlockKey:    "b:" + strconv.Itoa(i),
			Value:       []byte("x"),
			LockoutsKey: "l:" + strconv.Itoa(i),
			Window:      time.Hour,
			Durations:   []time.Duration{time.Hour},
		}
		if _, err := s.Block(bg, req); err != nil {
			t.Fatal(err)
		}
	}
	r := &backend.Reservation{Blocks: []string{"b:none"}, Counters: []string{""}, TTL: time.Hour}
	for i := range flood {
		r.Counters[0] = "f:" + strconv.Itoa(i)
		if err := s.Reserve(bg, r); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if i%100_000 == 0 {
			if st := s.Stats(); st.Keys > maxKeys {
				t.Fatalf("bound broken at %d: %+v", i, st)
			}
		}
	}
	st := s.Stats()
	if st.Keys > maxKeys {
		t.Fatalf("bound broken: %+v", st)
	}
	wantEvict := uint64(flood - (maxKeys - 2*blocks))
	if st.Evictions < wantEvict {
		t.Fatalf("evictions %d < %d", st.Evictions, wantEvict)
	}
	for i := range blocks {
		es, err := s.Get(bg, []string{"b:" + strconv.Itoa(i), "l:" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		if !es[0].Found || !es[1].Found || string(es[1].Value) != "1" {
			t.Fatalf("block %d lost: %+v", i, es)
		}
	}
	// The most recent counter is still there (the victim is sampled among
	// the others, all at count 1: at worst it is evicted by a later key).
	if n := strings.Count(logbuf.String(), "evicting"); n != 1 {
		t.Fatalf("logged %d times, want once per burst:\n%s", n, logbuf.String())
	}
	t.Logf("stats after flood: %+v", st)
}

func TestExpiredPreferredOverEviction(t *testing.T) {
	s, c := openClock(t, 32)
	for i := range 32 {
		incr1(t, s, "short"+strconv.Itoa(i), 1, time.Second)
	}
	c.Advance(time.Second)
	incr1(t, s, "new", 1, 0)
	st := s.Stats()
	if st.Evictions != 0 || st.Expired != 32 || st.Keys != 1 {
		t.Fatalf("%+v", st)
	}
	// Within the same second the bound sweep does not run again: an
	// expired key in the sample or scan is still preferred to a live one.
	for i := range 31 {
		incr1(t, s, "t"+strconv.Itoa(i), 1, 2*time.Second)
	}
	c.Advance(500 * time.Millisecond)
	incr1(t, s, "live", 1, 0) // evicts a live counter (nothing expired)
	c.Advance(2 * time.Second)
	incr1(t, s, "x", 1, 0) // sweep: t* expired
	st = s.Stats()
	if st.Evictions != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestSweep(t *testing.T) {
	s, c := openClock(t, 0)
	for i := range 100 {
		incr1(t, s, "s"+strconv.Itoa(i), 1, time.Second)
		incr1(t, s, "l"+strconv.Itoa(i), 1, time.Hour)
	}
	c.Advance(time.Second)
	n, err := s.Sweep(bg)
	if err != nil || n != 100 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if st := s.Stats(); st.Keys != 100 || st.Expired != 100 {
		t.Fatalf("%+v", st)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := s.Sweep(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sweep(cancelled) = %v", err)
	}
}

func TestBackgroundSweeper(t *testing.T) {
	c := newClock()
	s := open(t, &Options{Now: c.Now, SweepInterval: time.Millisecond})
	for i := range 10 {
		incr1(t, s, "k"+strconv.Itoa(i), 1, time.Second)
	}
	c.Advance(time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Keys != 0 {
		if time.Now().After(deadline) {
			t.Fatal("sweeper did not remove expired keys")
		}
		runtime.Gosched()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("sweeper still running after Close")
	}
}

func TestLazyExpiryOnGet(t *testing.T) {
	s, c := openClock(t, 0)
	incr1(t, s, "k", 1, time.Second)
	c.Advance(time.Second)
	if get1(t, s, "k").Found {
		t.Fatal("expired key found")
	}
	if st := s.Stats(); st.Keys != 0 || st.Expired != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestClose(t *testing.T) {
	s := open(t, nil)
	incr1(t, s, "k", 1, 0)
	if err := s.SetBlock(bg, "blk", nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	calls := map[string]func() error{
		"Incr":     func() error { _, err := s.Incr(bg, []string{"k"}, 1, 0); return err },
		"SetBlock": func() error { return s.SetBlock(bg, "k", nil, 0) },
		"Get":      func() error { _, err := s.Get(bg, []string{"k"}); return err },
		"Delete":   func() error { return s.Delete(bg, "k") },
		"Scan":     func() error { _, _, err := s.Scan(bg, "", "", 0); return err },
		"Reserve":  func() error { return s.Reserve(bg, &backend.Reservation{Counters: []string{"k"}}) },
		"Block": func() error {
			_, err := s.Block(bg, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Durations: []time.Duration{1}})
			return err
		},
		"Sweep": func() error { _, err := s.Sweep(bg); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, backend.ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	if st := s.Stats(); st.Keys != 0 || st.Pinned != 0 {
		t.Fatalf("keys retained after Close: %+v", st)
	}
}

// TestClosedShards covers calls that pass the closed flag but reach a shard
// released by a concurrent Close.
func TestClosedShards(t *testing.T) {
	s, _ := openClock(t, 0)
	for i := range s.shards {
		s.shards[i].idx = nil
	}
	now := int64(1)
	if _, err := s.incr("k", 1, 0, now, kindCounter); !errors.Is(err, backend.ErrClosed) {
		t.Error("incr", err)
	}
	if err := s.SetBlock(bg, "k", nil, 0); !errors.Is(err, backend.ErrClosed) {
		t.Error("SetBlock", err)
	}
	if _, err := s.lookup("k", now); !errors.Is(err, backend.ErrClosed) {
		t.Error("lookup", err)
	}
	if err := s.delete("k"); !errors.Is(err, backend.ErrClosed) {
		t.Error("delete", err)
	}
	for name, err := range map[string]error{
		"Incr":     func() error { _, err := s.Incr(bg, []string{"k"}, 1, 0); return err }(),
		"Get":      func() error { _, err := s.Get(bg, []string{"k"}); return err }(),
		"Delete":   s.Delete(bg, "k"),
		"Scan":     func() error { _, _, err := s.Scan(bg, "", "", 0); return err }(),
		"Sweep":    func() error { _, err := s.Sweep(bg); return err }(),
		"Reserve":  s.Reserve(bg, &backend.Reservation{Blocks: []string{"b"}}),
		"Reserve2": s.Reserve(bg, &backend.Reservation{Counters: []string{"c"}}),
		"Block": func() error {
			_, err := s.Block(bg, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Durations: []time.Duration{1}})
			return err
		}(),
	} {
		if !errors.Is(err, backend.ErrClosed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestBlockRefusedWritesNothing: a Block whose block cannot be stored
// (the pinned share is full) fails with ErrFull and writes nothing: no
// lockout count, and the failure counter stays.
func TestBlockRefusedWritesNothing(t *testing.T) {
	s, _ := openClock(t, 32) // one shard: 24 pinned keys at most
	for i := range 23 {
		if err := s.SetBlock(bg, "b"+strconv.Itoa(i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	incr1(t, s, "c", 4, time.Hour)
	// Room for one pinned key, Block needs two (the lockout count and the
	// block, both new).
	res, err := s.Block(bg, backend.BlockRequest{BlockKey: "newb", LockoutsKey: "l", CounterKey: "c", Durations: []time.Duration{time.Minute}})
	if !errors.Is(err, backend.ErrFull) || res != (backend.BlockResult{}) {
		t.Fatalf("%+v %v", res, err)
	}
	if get1(t, s, "l").Found || get1(t, s, "newb").Found || string(get1(t, s, "c").Value) != "4" {
		t.Fatal("a refused Block wrote something")
	}
	// The lockout count exists already: one new pinned key is enough.
	if _, err := s.Block(bg, backend.BlockRequest{BlockKey: "b0", LockoutsKey: "l0", Durations: []time.Duration{time.Minute}}); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Block(bg, backend.BlockRequest{BlockKey: "b1", LockoutsKey: "l0", Durations: []time.Duration{time.Minute}}); err != nil || res.Lockouts != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	// A lockouts key that holds a block is invalid, and writes nothing.
	if _, err := s.Block(bg, backend.BlockRequest{BlockKey: "b3", LockoutsKey: "b2", Durations: []time.Duration{time.Minute}}); !errors.Is(err, backend.ErrInvalid) {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Pinned != 24 || st.MaxPinned != 24 || st.Full != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestCancelledContext(t *testing.T) {
	s := open(t, nil)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	for name, err := range map[string]error{
		"Incr":     func() error { _, err := s.Incr(ctx, []string{"k"}, 1, 0); return err }(),
		"SetBlock": s.SetBlock(ctx, "k", nil, 0),
		"Get":      func() error { _, err := s.Get(ctx, []string{"k"}); return err }(),
		"Delete":   s.Delete(ctx, "k"),
		"Scan":     func() error { _, _, err := s.Scan(ctx, "", "", 0); return err }(),
		"Reserve":  s.Reserve(ctx, &backend.Reservation{}),
		"Block": func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Durations: []time.Duration{1}})
			return err
		}(),
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// laterCtx reports cancellation only from its n-th call of Err on, to
// reach the checks inside loops.
type laterCtx struct {
	context.Context
	n int
}

func (c *laterCtx) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

func TestCancelledMidway(t *testing.T) {
	s := open(t, nil)
	incr1(t, s, "k", 1, 0)
	if _, _, err := s.Scan(&laterCtx{Context: bg, n: 1}, "", "", 0); !errors.Is(err, context.Canceled) {
		t.Fatal("Scan:", err)
	}
	if _, err := s.Sweep(&laterCtx{Context: bg, n: 1}); !errors.Is(err, context.Canceled) {
		t.Fatal("Sweep:", err)
	}
}

func TestShardCount(t *testing.T) {
	tests := []struct{ max, shards int }{
		{1, 1}, {31, 1}, {64, 2}, {1000, 16}, {2048, 64}, {1 << 20, 64},
	}
	for _, tt := range tests {
		s := open(t, &Options{MaxKeys: tt.max, SweepInterval: -1})
		total := 0
		for i := range s.shards {
			total += s.shards[i].max
		}
		if len(s.shards) != tt.shards || total != tt.max {
			t.Errorf("MaxKeys %d: %d shards holding %d", tt.max, len(s.shards), total)
		}
	}
	if s := open(t, nil); s.maxKeys != DefaultMaxKeys || s.Stats().MaxKeys != DefaultMaxKeys {
		t.Fatal("default MaxKeys")
	}
}

func TestURL(t *testing.T) {
	tests := []struct {
		url     string
		maxKeys int
		errPart string
	}{
		{"memory://", DefaultMaxKeys, ""},
		{"memory:///", DefaultMaxKeys, ""},
		{"memory://?max_keys=5000", 5000, ""},
		{"MEMORY://?max_keys=7", 7, ""},
		{"memory://?max_keys=0", 0, "max_keys"},
		{"memory://?max_keys=x", 0, "max_keys"},
		{"memory://?maxkeys=1", 0, "maxkeys"},
		{"memory://host", 0, "no host"},
		{"memory://u:secret@", 0, "no host"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			b, err := backend.Open(bg, tt.url)
			if tt.errPart != "" {
				if !errors.Is(err, backend.ErrInvalidURL) || !strings.Contains(err.Error(), tt.errPart) || strings.Contains(err.Error(), "secret") {
					t.Fatalf("got %v, want ErrInvalidURL about %s", err, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if got := b.(*Store).Stats().MaxKeys; got != tt.maxKeys {
				t.Fatalf("MaxKeys %d", got)
			}
		})
	}
}

// TestHeapPerKey measures the heap held per tracked counter key.
func TestHeapPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const n = 100_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("defender:f:ip:203.0.%d.%d", i/256, i%256) // ~25 bytes, like an IP key
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := New(&Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := s.Incr(bg, []string{k}, 1, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("heap per tracked key (key ~%d bytes): %.0f bytes", len(keys[n-1]), per)
	if per > 300 {
		t.Errorf("%.0f bytes per key", per)
	}
	runtime.KeepAlive(s)
	_ = s.Close()
}

func TestReservePairs(t *testing.T) {
	s, _ := openClock(t, 0)
	incr1(t, s, "c-old", 5, time.Minute)
	if err := s.SetBlock(bg, "b1", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		blocks   []string
		counters []string
		blocked  int
		counts   string
		after    map[string]string // key -> value, "" = absent
	}{
		{"second pair blocked: first refunded and removed", []string{"b0", "b1"}, []string{"c-new", "c2"}, 1, "[]",
			map[string]string{"c-new": "", "c2": ""}},
		{"second pair blocked: old counter refunded", []string{"b0", "b1"}, []string{"c-old", "c2"}, 1, "[]",
			map[string]string{"c-old": "5", "c2": ""}},
		{"extra block blocked after all counters", []string{"b0", "b0", "b1"}, []string{"c-a", "c-b"}, 2, "[]",
			map[string]string{"c-a": "", "c-b": ""}},
		{"more counters than blocks", []string{"b0"}, []string{"m1", "m2", "m3"}, -1, "[1 1 1]",
			map[string]string{"m1": "1", "m3": "1"}},
		{"same key shard: block and counter share a lock", []string{"same"}, []string{"same2"}, -1, "[1]",
			map[string]string{"same2": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &backend.Reservation{Blocks: tt.blocks, Counters: tt.counters, TTL: time.Minute}
			if err := s.Reserve(bg, r); err != nil {
				t.Fatal(err)
			}
			if r.Blocked != tt.blocked || fmt.Sprint(r.Counts) != tt.counts {
				t.Fatalf("blocked %d counts %v", r.Blocked, r.Counts)
			}
			for k, v := range tt.after {
				e := get1(t, s, k)
				if string(e.Value) != v || e.Found != (v != "") {
					t.Fatalf("%s = %+v, want %q", k, e, v)
				}
			}
		})
	}
	// Keys sharing a shard (one lock for the pair).
	var b, c string
	for i := 0; b == "" || c == ""; i++ {
		k := "k" + strconv.Itoa(i)
		if s.shardIndex(k) == 0 {
			if b == "" {
				b = k
			} else {
				c = k
			}
		}
	}
	r := &backend.Reservation{Blocks: []string{b}, Counters: []string{c}}
	if err := s.Reserve(bg, r); err != nil || r.Blocked != -1 || r.Counts[0] != 1 {
		t.Fatalf("same shard: %v %+v", err, r)
	}
	if err := s.SetBlock(bg, b, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(bg, r); err != nil || r.Blocked != 0 {
		t.Fatalf("same shard blocked: %v %+v", err, r)
	}
}

// TestReserveOrderingRule races Block with Reserve: an attempt that was not
// blocked must have counted before the block deleted the counter, so it
// never leaves a fresh counter behind a block.
func TestReserveOrderingRule(t *testing.T) {
	s := open(t, nil)
	req := backend.BlockRequest{BlockKey: "b", CounterKey: "c", LockoutsKey: "l", Durations: []time.Duration{time.Hour}}
	for i := range 2000 {
		if err := s.Delete(bg, "b", "c", "l"); err != nil {
			t.Fatal(err)
		}
		r := &backend.Reservation{Blocks: []string{"b"}, Counters: []string{"c"}, TTL: time.Hour}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := s.Block(bg, req); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := s.Reserve(bg, r); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if r.Blocked == -1 && get1(t, s, "c").Found {
			t.Fatalf("iteration %d: a fresh counter behind a block", i)
		}
	}
}

// TestReserveInvalidMidway: a counter key that holds a block fails the
// reservation, and the counters before it are taken back.
func TestReserveInvalidMidway(t *testing.T) {
	s, _ := openClock(t, 0)
	incr1(t, s, "old", 3, time.Hour)
	if err := s.SetBlock(bg, "blk", nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	r := &backend.Reservation{Counters: []string{"old", "new", "blk"}, TTL: time.Hour}
	if err := s.Reserve(bg, r); !errors.Is(err, backend.ErrInvalid) || len(r.Counts) != 0 {
		t.Fatalf("%v %v", err, r.Counts)
	}
	if e := get1(t, s, "old"); string(e.Value) != "3" || get1(t, s, "new").Found {
		t.Fatalf("old = %s (want 3), new found %v", e.Value, get1(t, s, "new").Found)
	}
	// The same for Incr, with any delta.
	if _, err := s.Incr(bg, []string{"old", "new", "blk"}, 5, time.Hour); !errors.Is(err, backend.ErrInvalid) {
		t.Fatal(err)
	}
	if e := get1(t, s, "old"); string(e.Value) != "3" || get1(t, s, "new").Found {
		t.Fatalf("Incr: old = %s (want 3), new found %v", e.Value, get1(t, s, "new").Found)
	}
	if _, err := s.Incr(bg, []string{"old", "blk"}, 0, time.Hour); !errors.Is(err, backend.ErrInvalid) {
		t.Fatal(err)
	}
	if e := get1(t, s, "old"); string(e.Value) != "3" {
		t.Fatalf("old = %s", e.Value)
	}
}

func TestReserveLogsEviction(t *testing.T) {
	var logbuf bytes.Buffer
	s := open(t, &Options{MaxKeys: 32, SweepInterval: -1, Logger: slog.New(slog.NewTextHandler(&logbuf, nil))})
	for i := range 40 {
		if err := s.Reserve(bg, &backend.Reservation{Counters: []string{"c" + strconv.Itoa(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Evictions != 8 || strings.Count(logbuf.String(), "evicting") != 1 {
		t.Fatalf("%+v %s", st, logbuf.String())
	}
}

// TestHashCollisions chains keys whose 64-bit hashes collide (forced here:
// with a random seed they practically never do) and removes them from the
// head, the middle and the end of a chain.
func TestHashCollisions(t *testing.T) {
	for _, order := range [][]string{{"a", "b", "c"}, {"b", "a", "c"}, {"c", "b", "a"}, {"b", "c", "a"}} {
		s, _ := openClock(t, 32)
		sh := &s.shards[0]
		sh.mu.Lock()
		for _, k := range []string{"a", "b", "c"} {
			if _, _, err := s.insert(sh, 42, k, 1, kindCounter, int64(k[0]), 0, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := sh.find(42, "d"); ok {
			t.Fatal("found an absent key in the chain")
		}
		left := map[string]bool{"a": true, "b": true, "c": true}
		for _, k := range order {
			i, ok := sh.find(42, k)
			if !ok || sh.ents[i].n != int64(k[0]) {
				t.Fatalf("%v: %s not found", order, k)
			}
			sh.remove(i)
			delete(left, k)
			for k2 := range left {
				if i, ok := sh.find(42, k2); !ok || sh.ents[i].key != k2 {
					t.Fatalf("%v: after removing %s, %s is lost", order, k, k2)
				}
			}
		}
		if len(sh.idx) != 0 || sh.n != 0 {
			t.Fatalf("%v: %d map entries, %d keys left", order, len(sh.idx), sh.n)
		}
		sh.mu.Unlock()
	}
}

// TestCloseRacingTwoShardCalls closes stores while goroutines run the
// calls that lock two shards (Block, Reserve) on keys spread over every
// shard. Close used to clear the shards one at a time, so a call holding a
// low shard already cleared and a high one not yet cleared wrote into a
// released shard (a panic). Each call must succeed or fail with ErrClosed.
func TestCloseRacingTwoShardCalls(t *testing.T) {
	for round := range 40 {
		s := open(t, &Options{SweepInterval: -1})
		var started sync.WaitGroup
		var wg sync.WaitGroup
		for w := range 4 {
			started.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					k := strconv.Itoa(round*1_000_000 + w*100_000 + n)
					_, err := s.Block(bg, backend.BlockRequest{
						BlockKey: "b" + k, LockoutsKey: "l" + k, CounterKey: "c" + k,
						Window: time.Hour, Durations: []time.Duration{time.Hour},
					})
					if err == nil {
						err = s.Reserve(bg, &backend.Reservation{
							Blocks: []string{"x" + k, "y" + k}, Counters: []string{"p" + k, "q" + k}, TTL: time.Hour,
						})
					}
					if n == 50 {
						started.Done()
					}
					switch {
					case errors.Is(err, backend.ErrClosed):
						if n < 50 {
							started.Done()
						}
						return
					case err != nil:
						t.Errorf("call while Close runs: %v, want nil or ErrClosed", err)
						if n < 50 {
							started.Done()
						}
						return
					}
				}
			}()
		}
		started.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}
