package bolt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/conformance"
)

// Child process modes, selected by this environment variable (see
// TestMain): "hold" opens the file and waits for stdin to close; "flood"
// writes until killed, reporting each write before it starts and after it
// is acknowledged.
const childEnv = "DEFENDER_BOLT_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "hold":
		childHold(os.Getenv("DEFENDER_BOLT_TEST_PATH"))
	case "flood":
		childFlood(os.Getenv("DEFENDER_BOLT_TEST_PATH"))
	default:
		os.Exit(m.Run())
	}
}

func childHold(path string) {
	s, err := Open(path, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = s.Close()
	os.Exit(0)
}

func childFlood(path string) {
	s, err := Open(path, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		mu.Unlock()
	}
	ctx := context.Background()
	for g := range floodWriters {
		go func() {
			for i := 1; ; i++ {
				say("s %d %d", g, i)
				if _, err := s.Incr(ctx, []string{"c" + strconv.Itoa(g)}, 1, time.Hour); err != nil {
					say("error %v", err)
					return
				}
				if err := s.SetBlock(ctx, "b"+strconv.Itoa(g), []byte(strconv.Itoa(i)), time.Hour); err != nil {
					say("error %v", err)
					return
				}
				say("a %d %d", g, i)
			}
		}()
	}
	select {}
}

const floodWriters = 8

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

var bg = context.Background()

func open(t testing.TB, o *Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "test.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openClock(t testing.TB) (*Store, *clock) {
	c := newClock()
	return open(t, &Options{Now: c.Now, SweepInterval: -1}), c
}

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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := openClock(t)
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
		{"block bad counter key", func() error {
			_, err := s.Block(bg, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", CounterKey: "a b", Durations: []time.Duration{1}})
			return err
		}},
		{"scan bad cursor", func() error { _, _, err := s.Scan(bg, "", "x1", 0); return err }},
		{"scan short cursor", func() error { _, _, err := s.Scan(bg, "", "k", 0); return err }},
		{"incr on a block", func() error {
			if err := s.SetBlock(bg, "blk", nil, 0); err != nil {
				return err
			}
			_, err := s.Incr(bg, []string{"blk"}, 1, 0)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, backend.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
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
	// A block with an empty value round-trips as an empty, non-nil value.
	if err := s.SetBlock(bg, "empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	if e := get1(t, s, "empty"); !e.Found || e.Value == nil || len(e.Value) != 0 {
		t.Fatalf("empty block: %+v", e)
	}
	// A block replaces a counter.
	if err := s.SetBlock(bg, "b", []byte("blk"), 0); err != nil {
		t.Fatal(err)
	}
	if e := get1(t, s, "b"); string(e.Value) != "blk" {
		t.Fatalf("got %q", e.Value)
	}
}

func TestExactCountsUnderConcurrency(t *testing.T) {
	s := open(t, nil)
	const G, N = 64, 50
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
			}
		}()
	}
	wg.Wait()
	es, err := s.Get(bg, []string{"shared", "g0", "g63"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{strconv.Itoa(G * N), strconv.Itoa(N), strconv.Itoa(N)}
	for i, e := range es {
		if string(e.Value) != want[i] {
			t.Errorf("%s = %s, want %s", e.Key, e.Value, want[i])
		}
	}
}

func TestReserve(t *testing.T) {
	s, c := openClock(t)
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
	for _, r := range []*backend.Reservation{{}, {Blocks: []string{"b:none"}}, {Counters: []string{"only"}}} {
		if err := backend.Reserve(bg, s, r); err != nil || r.Blocked != -1 || len(r.Counts) != len(r.Counters) {
			t.Fatalf("%+v: %v", r, err)
		}
	}
}

// seqClock returns the given instants one per call, then the last forever.
type seqClock struct {
	mu sync.Mutex
	ts []time.Time
}

func (c *seqClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.ts[0]
	if len(c.ts) > 1 {
		c.ts = c.ts[1:]
	}
	return t
}

// TestReserveBlockAppearsBeforeWrite covers a block that the read-only
// check did not see but the write transaction does: nothing is counted.
func TestReserveBlockAppearsBeforeWrite(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	sc := &seqClock{ts: []time.Time{t0}}
	s := open(t, &Options{Now: sc.Now, SweepInterval: -1})
	if err := s.SetBlock(bg, "b", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// The read-only check sees the block expired (t0+1m); the write
	// transaction sees it live again (t0).
	sc.mu.Lock()
	sc.ts = []time.Time{t0.Add(time.Minute), t0}
	sc.mu.Unlock()
	r := &backend.Reservation{Blocks: []string{"b"}, Counters: []string{"c"}, TTL: time.Minute}
	if err := s.Reserve(bg, r); err != nil {
		t.Fatal(err)
	}
	if r.Blocked != 0 || len(r.Counts) != 0 || get1(t, s, "c").Found {
		t.Fatalf("%+v", r)
	}
}

func TestBlockEscalates(t *testing.T) {
	s, c := openClock(t)
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
	req.CounterKey = ""
	if _, err := s.Block(bg, req); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	if res, err := s.Block(bg, req); err != nil || res.Lockouts != 1 {
		t.Fatalf("after window: %+v %v", res, err)
	}
	// The lockout key holds a block: Incr fails, nothing is written.
	req.LockoutsKey = "b:u"
	if _, err := s.Block(bg, req); !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

func scanAll(t *testing.T, s *Store, prefix string, limit int) (map[string]int, int) {
	t.Helper()
	got := map[string]int{}
	cursor, pages := "", 0
	for {
		es, next, err := s.Scan(bg, prefix, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if limit > 0 && len(es) > limit {
			t.Fatalf("page of %d > limit %d", len(es), limit)
		}
		for _, e := range es {
			got[e.Key]++
			if !e.Found {
				t.Fatalf("entry %+v", e)
			}
		}
		if next == "" {
			return got, pages
		}
		cursor = next
	}
}

func TestScan(t *testing.T) {
	s, c := openClock(t)
	special := []string{"p:a:b", "p:%41", "p:*", "p:?", "p:[x]", "p:{y}", "p:" + strings.Repeat("~", backend.MaxKeyLen-2)}
	want := map[string]bool{}
	for _, k := range special {
		want[k] = true
		if err := s.SetBlock(bg, k, []byte(k), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{}
	for i := range 300 {
		k := fmt.Sprintf("p:n%03d", i)
		want[k] = true
		keys = append(keys, k)
	}
	if _, err := s.Incr(bg, keys, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	gone := []string{}
	for i := range 50 {
		gone = append(gone, fmt.Sprintf("p:gone%02d", i))
	}
	if _, err := s.Incr(bg, gone, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(bg, []string{"q:1", "o:1"}, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	for _, limit := range []int{0, 1, 2, 7, 100, 10000} {
		t.Run(fmt.Sprint("limit", limit), func(t *testing.T) {
			got, _ := scanAll(t, s, "p:", limit)
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
	// A run of 50 expired keys with limit 2 gives an empty page that
	// still continues.
	es, next, err := s.Scan(bg, "p:gone", "", 2)
	if err != nil || len(es) != 0 || next == "" {
		t.Fatalf("expired run: %v %q %v", es, next, err)
	}
	es, _, err = s.Scan(bg, "p:*", "", 0)
	if err != nil || len(es) != 1 || es[0].Key != "p:*" || string(es[0].Value) != "p:*" || es[0].TTL != time.Hour-time.Second {
		t.Fatalf("literal prefix: %+v %v", es, err)
	}
	// Exactly limit matches: a single page, no empty one after it.
	if es, next, err := s.Scan(bg, "p:{", "", 1); err != nil || len(es) != 1 || next != "" {
		t.Fatalf("exact page: %v %q %v", es, next, err)
	}
}

func TestScanDeleteDuring(t *testing.T) {
	s := open(t, nil)
	keys := []string{}
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("k%03d", i))
	}
	if _, err := s.Incr(bg, keys, 1, 0); err != nil {
		t.Fatal(err)
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
			if err := s.Delete(bg, e.Key); err != nil {
				t.Fatal(err)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 100 {
		t.Fatalf("saw %d keys", len(seen))
	}
}

func TestSweep(t *testing.T) {
	s, c := openClock(t)
	var short, long []string
	for i := range 2500 {
		short = append(short, fmt.Sprintf("s%04d", i))
		long = append(long, fmt.Sprintf("l%04d", i))
	}
	if _, err := s.Incr(bg, short, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(bg, long, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	n, err := s.Sweep(bg)
	if err != nil || n != 2500 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	got, _ := scanAll(t, s, "", 0)
	if len(got) != 2500 {
		t.Fatalf("%d keys left", len(got))
	}
	// Nothing on disk either.
	_ = s.db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucket).Stats().KeyN; n != 2500 {
			t.Errorf("%d keys on disk", n)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := s.Sweep(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sweep(cancelled) = %v", err)
	}
	if _, err := s.Sweep(&laterCtx{Context: bg, n: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sweep(cancelled later) = %v", err)
	}
}

// laterCtx reports cancellation from its n-th call of Err on.
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

func TestBackgroundSweeper(t *testing.T) {
	c := newClock()
	s := open(t, &Options{Now: c.Now, SweepInterval: time.Millisecond})
	if _, err := s.Incr(bg, []string{"a", "b"}, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		_ = s.db.View(func(tx *bbolt.Tx) error { n = tx.Bucket(bucket).Stats().KeyN; return nil })
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sweeper did not delete expired keys")
		}
		time.Sleep(time.Millisecond) // polling a background goroutine, not papering over a race
	}
}

func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := Open(path, nil)
	if err != nil {
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
	// The file lock is released.
	s2, err := Open(path, &Options{Timeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	_ = s2.Close()
}

// TestDatabaseClosedUnderneath maps bbolt's own "not open" error.
func TestDatabaseClosedUnderneath(t *testing.T) {
	s := open(t, &Options{SweepInterval: -1})
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, []string{"k"}); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := s.Incr(bg, []string{"k"}, 1, 0); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Incr: %v", err)
	}
}

func TestCorruptValues(t *testing.T) {
	s := open(t, &Options{SweepInterval: -1})
	bad := map[string][]byte{
		"short":   []byte("abc"),
		"counter": append(make([]byte, 8), kindCounter, 1, 2),
		"kind":    append(make([]byte, 8), 'z'),
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		for k, v := range bad {
			if err := tx.Bucket(bucket).Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for k := range bad {
		t.Run(k, func(t *testing.T) {
			if _, err := s.Get(bg, []string{k}); !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "corrupt") && !strings.Contains(err.Error(), "kind") {
				t.Errorf("Get: %v", err)
			}
			if _, err := s.Incr(bg, []string{k}, 1, 0); !errors.Is(err, backend.ErrUnavailable) {
				t.Errorf("Incr: %v", err)
			}
			if err := s.Reserve(bg, &backend.Reservation{Blocks: []string{k}}); !errors.Is(err, backend.ErrUnavailable) {
				t.Errorf("Reserve: %v", err)
			}
			if _, _, err := s.Scan(bg, k, "", 0); !errors.Is(err, backend.ErrUnavailable) {
				t.Errorf("Scan: %v", err)
			}
		})
	}
	// Sweep leaves what it cannot decode alone.
	if n, err := s.Sweep(bg); err != nil || n != 0 {
		t.Fatalf("Sweep: %d %v", n, err)
	}
}

// TestReserveCorruptCounter covers an error inside the write transaction.
func TestReserveCorruptCounter(t *testing.T) {
	s := open(t, &Options{SweepInterval: -1})
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put([]byte("c"), []byte("x")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(bg, &backend.Reservation{Counters: []string{"c"}}); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatal(err)
	}
	r := &backend.Reservation{Blocks: []string{"c"}, Counters: []string{"d"}}
	if err := s.Reserve(bg, r); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatal(err)
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

// TestCancelDuringWrite: a caller whose context ends while its write waits
// for the batch returns at once with the context's error, and the write
// never happens, not even at Close.
func TestCancelDuringWrite(t *testing.T) {
	s := open(t, &Options{MaxBatchDelay: 300 * time.Millisecond, MaxBatchSize: 1000, SweepInterval: -1})
	ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Incr(ctx, []string{"k"}, 1, 0)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not written") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("returned after %v", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if e := get1(t, s2, "k"); e.Found {
		t.Fatalf("the abandoned write was committed: %+v", e)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "not.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a bolt file", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		opts *Options
		is   error
	}{
		{"missing directory", filepath.Join(dir, "nope", "x.db"), nil, os.ErrNotExist},
		{"not a database", notDB, nil, nil},
		{"negative batch size", filepath.Join(dir, "a.db"), &Options{MaxBatchSize: -1}, backend.ErrInvalid},
		{"negative batch delay", filepath.Join(dir, "a.db"), &Options{MaxBatchDelay: -1}, backend.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.path, tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			if tt.is != backend.ErrInvalid && !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

func TestLockedSameProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, timeout := range []time.Duration{-1, 200 * time.Millisecond} {
		start := time.Now()
		s2, err := Open(path, &Options{Timeout: timeout})
		if err == nil {
			s2.Close()
			t.Fatal("second Open of a held file succeeded")
		}
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v", err)
		}
		if d := time.Since(start); d > max(timeout, 0)+time.Second {
			t.Fatalf("timeout %v: waited %v", timeout, d)
		}
	}
}

func TestLockedOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=hold", "DEFENDER_BOLT_TEST_PATH="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("child: %q %v", line, err)
	}
	start := time.Now()
	_, err = Open(path, &Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Fatalf("waited %v for a 300ms timeout", d)
	}
	// The child lets go: Open succeeds.
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
}

// TestKill9 kills a child process in the middle of a flood of writes with
// fsync on, then reopens the file: it opens cleanly, passes bbolt's
// consistency check, every key has its expiry, and each count lies between
// what was acknowledged and what was started.
func TestKill9(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the other tests
	path := filepath.Join(t.TempDir(), "k.db")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=flood", "DEFENDER_BOLT_TEST_PATH="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	started := make([]int, floodWriters)
	acked := make([]int, floodWriters)
	sc := bufio.NewScanner(out)
	total, killed := 0, false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] == "error" {
			t.Fatalf("child: %s", sc.Text())
		}
		g, _ := strconv.Atoi(f[1])
		i, _ := strconv.Atoi(f[2])
		if f[0] == "s" {
			started[g] = i
		} else {
			acked[g] = i
			total++
		}
		if total == 400 && !killed {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("child exited before the kill (%d acks)", total)
	}
	s, err := Open(path, &Options{SweepInterval: -1})
	if err != nil {
		t.Fatal("reopen after kill -9:", err)
	}
	defer s.Close()
	if err := s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatal("consistency check:", err)
	}
	for g := range floodWriters {
		es, err := s.Get(bg, []string{"c" + strconv.Itoa(g), "b" + strconv.Itoa(g)})
		if err != nil {
			t.Fatal(err)
		}
		c, b := es[0], es[1]
		n, _ := strconv.Atoi(string(c.Value))
		if n < acked[g] || n > started[g] {
			t.Errorf("writer %d: count %d not in [acked %d, started %d]", g, n, acked[g], started[g])
		}
		if c.Found && (c.TTL <= 0 || c.TTL > time.Hour) {
			t.Errorf("writer %d: counter TTL %v", g, c.TTL)
		}
		if acked[g] > 0 {
			v, _ := strconv.Atoi(string(b.Value))
			if !b.Found || v < acked[g] || v > started[g] || b.TTL <= 0 || b.TTL > time.Hour {
				t.Errorf("writer %d: block %+v not in [%d, %d] or without TTL", g, b, acked[g], started[g])
			}
		}
		t.Logf("writer %d: acked %d, started %d, stored %d", g, acked[g], started[g], n)
	}
}

func TestURL(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	tests := []struct {
		url     string
		file    string // expected path, relative to dir or absolute
		errPart string
	}{
		{"bolt://" + filepath.Join(dir, "abs.db"), filepath.Join(dir, "abs.db"), ""},
		{"bolt://rel.db", "rel.db", ""},
		{"bolt:opaque.db", "opaque.db", ""},
		{"bolt://rel2.db?timeout=2s&nosync=true&sweep_interval=1m&max_batch_delay=5ms&max_batch_size=10", "rel2.db", ""},
		{"bolt://", "", "names no file"},
		{"bolt://u:secret@x.db", "", "no user"},
		{"bolt://x.db?timeout=soon", "", "timeout"},
		{"bolt://x.db?nosync=maybe", "", "nosync"},
		{"bolt://x.db?max_batch_size=0", "", "max_batch_size"},
		{"bolt://x.db?max_batch_delay=-1s", "", "max_batch_delay"},
		{"bolt://x.db?sweep_interval=x", "", "sweep_interval"},
		{"bolt://x.db?fsync=1", "", "fsync"},
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
			if got := b.(*Store).Path(); got != tt.file {
				t.Fatalf("path %q, want %q", got, tt.file)
			}
			if _, err := os.Stat(tt.file); err != nil {
				t.Fatal(err)
			}
		})
	}
	b, err := backend.Open(bg, "bolt://opts.db?nosync=true&max_batch_size=7&max_batch_delay=3ms")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if s := b.(*Store); !s.db.NoSync || s.cm.maxSize != 7 || s.cm.maxDelay != 3*time.Millisecond {
		t.Fatalf("options not applied: %v %d %v", s.db.NoSync, s.cm.maxSize, s.cm.maxDelay)
	}
}

// TestFileBytesPerKey measures the file size per tracked key.
func TestFileBytesPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	s := open(t, &Options{SweepInterval: -1, NoSync: true})
	const n, per = 100_000, 1000
	for i := 0; i < n; i += per {
		keys := make([]string, per)
		for j := range keys {
			keys[j] = fmt.Sprintf("defender:f:ip:203.0.%d.%d", (i+j)/256, (i+j)%256)
		}
		if _, err := s.Incr(bg, keys, 1, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	var used int
	_ = s.db.View(func(tx *bbolt.Tx) error {
		st := tx.Bucket(bucket).Stats()
		used = st.LeafAlloc + st.BranchAlloc
		return nil
	})
	t.Logf("file: %d bytes for %d keys (key ~27 bytes): %.0f bytes/key; pages in use: %.0f bytes/key",
		fi.Size(), n, float64(fi.Size())/n, float64(used)/n)
}

// TestGroupCommit gathers concurrent writes into shared transactions (a
// delay makes the gathering certain), including a failing one: it alone
// fails, the others are committed once each, in transactions of at most
// MaxBatchSize.
func TestGroupCommit(t *testing.T) {
	for _, size := range []int{1, 3, 1000} {
		t.Run(fmt.Sprint("size", size), func(t *testing.T) {
			s := open(t, &Options{MaxBatchDelay: 50 * time.Millisecond, MaxBatchSize: size, SweepInterval: -1})
			if err := s.SetBlock(bg, "blk", nil, 0); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make([]error, 10)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := "c"
					if i == 4 {
						key = "blk"
					}
					_, errs[i] = s.Incr(bg, []string{key, "d" + strconv.Itoa(i)}, 1, 0)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if (i == 4) != errors.Is(err, backend.ErrInvalid) {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			if e := get1(t, s, "c"); string(e.Value) != "9" {
				t.Fatalf("c = %s, want 9", e.Value)
			}
			if get1(t, s, "d4").Found {
				t.Fatal("the failed call's other key was written")
			}
		})
	}
}

// TestConformance runs the suite in real time (the store's own clock).
func TestConformance(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the other tests
	if testing.Short() {
		t.Skip("real-time TTL checks sleep about half a minute")
	}
	conformance.Run(t, func(t *testing.T) backend.Backend {
		s, err := Open(filepath.Join(t.TempDir(), "conformance.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s // the suite closes it
	})
}

// TestConformanceFakeClock runs the suite on a fake clock.
func TestConformanceFakeClock(t *testing.T) {
	c := newClock()
	conformance.RunHarness(t, conformance.Harness{
		Open: func(t *testing.T) backend.Backend {
			s, err := Open(filepath.Join(t.TempDir(), "conformance.db"), &Options{Now: c.Now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Advance: c.Advance,
		Now:     c.Now,
	})
}

// TestCancelledCallerReusesInputs: a caller that gave up while its write
// was queued may reuse its slices at once: the write never runs.
func TestCancelledCallerReusesInputs(t *testing.T) {
	s0 := open(t, &Options{SweepInterval: -1})
	incr1(t, s0, "d", 1, 0)
	if err := s0.Close(); err != nil {
		t.Fatal(err)
	}
	// An idle committer: the calls below wait for its 100ms batch delay.
	s, err := Open(s0.Path(), &Options{MaxBatchDelay: 100 * time.Millisecond, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(bg, 5*time.Millisecond)
	defer cancel()
	r := &backend.Reservation{Blocks: []string{"b"}, Counters: []string{"c"}, TTL: time.Hour}
	keys := []string{"k"}
	val := []byte("v1")
	req := backend.BlockRequest{BlockKey: "bb", Value: []byte("w1"), LockoutsKey: "l", Durations: []time.Duration{time.Hour}}
	dels := []string{"d"}
	var wg sync.WaitGroup
	for _, call := range []func() error{
		func() error { return s.Reserve(ctx, r) },
		func() error { _, err := s.Incr(ctx, keys, 1, 0); return err },
		func() error { return s.SetBlock(ctx, "sb", val, 0) },
		func() error { _, err := s.Block(ctx, req); return err },
		func() error { return s.Delete(ctx, dels...) },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := call(); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v", err)
			}
		}()
	}
	wg.Wait()
	r.Blocks[0], r.Counters[0], keys[0], dels[0] = "X", "Y", "Z", "c"
	val[1], req.Value[1], req.Durations[0] = '2', '2', time.Second
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	es, err := s2.Get(bg, []string{"c", "Y", "k", "Z", "sb", "bb", "l", "d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es[:7] {
		if e.Found {
			t.Fatalf("an abandoned write ran: %+v", e)
		}
	}
	if !es[7].Found {
		t.Fatal("an abandoned Delete ran")
	}
}

// TestTakenWriteReportsCommitted: a caller whose context ends while its
// write is in a committing transaction waits for the commit and reports
// success, and the write is there.
func TestTakenWriteReportsCommitted(t *testing.T) {
	s := open(t, &Options{SweepInterval: -1})
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	testHookInTx = func() {
		cancel()
		<-ctx.Done()
		runtime.Gosched() // let the caller see its context end first, usually
	}
	defer func() { testHookInTx = nil }()
	r := &backend.Reservation{Blocks: []string{"b"}, Counters: []string{"c"}, TTL: time.Hour}
	err := s.Reserve(ctx, r)
	testHookInTx = nil
	if err != nil || len(r.Counts) != 1 || r.Counts[0] != 1 {
		t.Fatalf("Reserve = %v %+v, want the committed count", err, r)
	}
	if ctx.Err() == nil {
		t.Fatal("the context did not end during the commit")
	}
	if e := get1(t, s, "c"); string(e.Value) != "1" {
		t.Fatalf("c = %+v", e)
	}
}

// TestCancellationIsExact races many Reserves, Incrs and Blocks whose
// contexts end at random points (before the call, while queued, during a
// commit) and checks that an error always means "not written": the counter
// ends at exactly the number of successful Reserves and Incrs, and the
// lockout count at the number of successful Blocks.
func TestCancellationIsExact(t *testing.T) {
	for _, nosync := range []bool{false, true} {
		s := open(t, &Options{SweepInterval: -1, NoSync: nosync})
		var ok, failed, lockouts atomic.Int64
		var wg sync.WaitGroup
		for i := range 600 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(bg)
				defer cancel()
				switch i % 10 {
				case 0:
					cancel() // before the call: always an error
				case 1:
					// never cancelled: always a success
				default:
					stop := time.AfterFunc(time.Duration(rand.N(5000))*time.Microsecond, cancel)
					defer stop.Stop()
				}
				var err error
				switch i % 3 {
				case 0:
					err = s.Reserve(ctx, &backend.Reservation{Blocks: []string{"b"}, Counters: []string{"c"}, TTL: time.Hour})
				case 1:
					_, err = s.Incr(ctx, []string{"c"}, 1, time.Hour)
				default:
					_, err = s.Block(ctx, backend.BlockRequest{BlockKey: "other", LockoutsKey: "l", Window: time.Hour, Durations: []time.Duration{time.Hour}})
					if err == nil {
						lockouts.Add(1)
						return
					}
				}
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, context.Canceled):
					failed.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		c, l := get1(t, s, "c"), get1(t, s, "l")
		t.Logf("nosync %v: %d counted, %d cancelled, %d lockouts", nosync, ok.Load(), failed.Load(), lockouts.Load())
		if got, _ := strconv.ParseInt(string(c.Value), 10, 64); got != ok.Load() {
			t.Errorf("nosync %v: counter %d, want the %d successful calls", nosync, got, ok.Load())
		}
		if got, _ := strconv.ParseInt(string(l.Value), 10, 64); got != lockouts.Load() {
			t.Errorf("nosync %v: lockouts %d, want the %d successful Blocks", nosync, got, lockouts.Load())
		}
		if failed.Load() < 40 || ok.Load() < 40 {
			t.Errorf("nosync %v: %d ok, %d cancelled; want at least the 40 never and the 40 always cancelled calls to Reserve and Incr", nosync, ok.Load(), failed.Load())
		}
	}
}

// FuzzDecode: any stored bytes decode to a value or an error, never a
// panic, and what encode writes decodes back.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{}, int64(0), int64(5), []byte("v"))
	f.Add(encodeCounter(7, -3), int64(1), int64(-1), []byte(nil))
	f.Add(encodeBlock(0, []byte("x")), int64(9), int64(0), []byte{0})
	f.Fuzz(func(t *testing.T, raw []byte, exp, n int64, val []byte) {
		_, _ = decode([]byte("k"), raw)
		d, err := decode([]byte("k"), encodeCounter(exp, n))
		if err != nil || d.exp != exp || d.kind != kindCounter || d.n != n {
			t.Fatalf("counter %d/%d: %+v %v", exp, n, d, err)
		}
		d, err = decode([]byte("k"), encodeBlock(exp, val))
		if err != nil || d.exp != exp || d.kind != kindBlock || !bytes.Equal(d.val, val) {
			t.Fatalf("block %d/%q: %+v %v", exp, val, d, err)
		}
	})
}
