package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

func bg() context.Context { return context.Background() }

func TestNewValidatesOptions(t *testing.T) {
	c := memcache.New("127.0.0.1:1")
	tests := []struct {
		name   string
		client *memcache.Client
		opts   *Options
		want   string // substring of the error; "" = no error
	}{
		{"nil options", c, nil, ""},
		{"longest prefix", c, &Options{Prefix: strings.Repeat("p", MaxPrefixLen)}, ""},
		{"nil client", nil, nil, "nil client"},
		{"prefix too long", c, &Options{Prefix: strings.Repeat("p", MaxPrefixLen+1)}, "Options.Prefix is 51 bytes"},
		{"prefix with space", c, &Options{Prefix: "a b"}, "Options.Prefix"},
		{"prefix with control byte", c, &Options{Prefix: "a\nb"}, "Options.Prefix"},
		{"prefix with non-ASCII", c, &Options{Prefix: "é"}, "Options.Prefix"},
		{"negative shards", c, &Options{IndexShards: -1}, "IndexShards"},
		{"negative shard bytes", c, &Options{IndexShardBytes: -1}, "IndexShardBytes"},
		{"negative queue", c, &Options{IndexQueue: -1}, "IndexQueue"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.client, tc.opts)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				s.Close()
				return
			}
			if !errors.Is(err, backend.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: error %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestBasicOperations(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()

	got, err := s.Incr(ctx, []string{"a", "b"}, 3, time.Minute)
	if err != nil || !slices.Equal(got, []int64{3, 3}) {
		t.Fatalf("Incr = %v, %v; want [3 3]", got, err)
	}
	if got, err = s.Incr(ctx, []string{"a"}, -5, time.Minute); err != nil || got[0] != -2 {
		t.Fatalf("Incr(-5) = %v, %v; want [-2]", got, err)
	}
	if got, err = s.Incr(ctx, nil, 1, time.Minute); err != nil || len(got) != 0 {
		t.Fatalf("Incr(no keys) = %v, %v", got, err)
	}
	if err := s.SetBlock(ctx, "blk", []byte("why"), time.Minute); err != nil {
		t.Fatal(err)
	}
	es, err := s.Get(ctx, []string{"a", "blk", "none"})
	if err != nil {
		t.Fatal(err)
	}
	if !es[0].Found || string(es[0].Value) != "-2" || es[0].TTL != time.Minute {
		t.Errorf("Get(a) = %+v, want -2 with TTL 1m", es[0])
	}
	if !es[1].Found || string(es[1].Value) != "why" || es[1].TTL != time.Minute {
		t.Errorf("Get(blk) = %+v, want why with TTL 1m", es[1])
	}
	if es[2].Found || es[2].Key != "none" {
		t.Errorf("Get(none) = %+v, want absent", es[2])
	}
	if es, err := s.Get(ctx, nil); err != nil || len(es) != 0 {
		t.Errorf("Get(no keys) = %v, %v", es, err)
	}
	if err := s.Delete(ctx, "a", "blk", "none"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	es, _ = s.Get(ctx, []string{"a", "blk", "b"})
	if es[0].Found || es[1].Found || !es[2].Found {
		t.Errorf("after Delete: %+v", es)
	}
}

func TestInvalidArguments(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()
	long := strings.Repeat("k", backend.MaxKeyLen+1)
	calls := map[string]func() error{
		"Incr empty key":    func() error { _, err := s.Incr(ctx, []string{""}, 1, 0); return err },
		"Incr space":        func() error { _, err := s.Incr(ctx, []string{"a b"}, 1, 0); return err },
		"Incr negative ttl": func() error { _, err := s.Incr(ctx, []string{"a"}, 1, -time.Second); return err },
		"Get long key":      func() error { _, err := s.Get(ctx, []string{long}); return err },
		"SetBlock key":      func() error { return s.SetBlock(ctx, "a\x00", nil, 0) },
		"SetBlock ttl":      func() error { return s.SetBlock(ctx, "a", nil, -1) },
		"Delete key":        func() error { return s.Delete(ctx, "é") },
		"Reserve block key": func() error { return s.Reserve(ctx, &backend.Reservation{Blocks: []string{""}}) },
		"Reserve counter":   func() error { return s.Reserve(ctx, &backend.Reservation{Counters: []string{"x y"}}) },
		"Reserve ttl":       func() error { return s.Reserve(ctx, &backend.Reservation{Counters: []string{"c"}, TTL: -1}) },
		"Block durations": func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l"})
			return err
		},
		"Block negative duration": func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Durations: []time.Duration{-1}})
			return err
		},
		"Block window": func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Window: -1, Durations: []time.Duration{1}})
			return err
		},
		"Block key": func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "", Durations: []time.Duration{1}})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, backend.ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
		})
	}
	var r backend.Reservation
	if err := s.Reserve(ctx, &r); err != nil || r.Blocked != -1 || len(r.Counts) != 0 {
		t.Fatalf("empty Reserve = %+v, %v", r, err)
	}
}

// TestLongKeys writes keys of backend.MaxKeyLen bytes under the longest
// prefix: 250 bytes on the server.
func TestLongKeys(t *testing.T) {
	addr := testserver.StartMemcached(t)
	prefix := strings.Repeat("P", MaxPrefixLen)
	s := newStore(t, &Options{Prefix: prefix}, addr)
	ctx := bg()
	var keys []string
	for _, c := range "abc" {
		keys = append(keys, strings.Repeat(string(c), backend.MaxKeyLen-1)+"~")
	}
	if _, err := s.Incr(ctx, keys[:2], 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBlock(ctx, keys[2], []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if len(prefix+k) != MaxKeyLen {
			t.Fatalf("key length %d", len(prefix+k))
		}
		if _, ok := serverTTL(t, addr, prefix+k); !ok {
			t.Errorf("server has no key %.20q...", k)
		}
	}
	es, _, err := s.Scan(ctx, "", "", 0)
	if err != nil || len(es) != 3 {
		t.Fatalf("Scan = %d entries, %v; want 3", len(es), err)
	}
	if err := s.Delete(ctx, keys...); err != nil {
		t.Fatal(err)
	}
}

func TestExpiry(t *testing.T) {
	const year = 365 * 24 * time.Hour
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		ttl     time.Duration
		wantExp int64
		wantMC  int32
	}{
		{0, 0, 0},
		{time.Nanosecond, now.UnixMilli() + 1000, 2},
		{500 * time.Millisecond, now.UnixMilli() + 1000, 2},
		{time.Second, now.UnixMilli() + 1000, 2},
		{1500 * time.Millisecond, now.UnixMilli() + 2000, 3},
		{30*24*time.Hour - time.Second, now.UnixMilli() + (maxRelative-1)*1000, maxRelative},
		{30 * 24 * time.Hour, now.UnixMilli() + maxRelative*1000, int32(now.Unix()) + maxRelative + 1},
		{31 * 24 * time.Hour, now.UnixMilli() + 31*86400*1000, int32(now.Unix()) + 31*86400 + 1},
		{20 * year, now.UnixMilli() + int64(20*year/time.Millisecond), math.MaxInt32},
		{math.MaxInt64, now.UnixMilli() + math.MaxInt32*1000, math.MaxInt32},
	}
	for _, tc := range tests {
		exp, mc := expiry(now, ttlSeconds(tc.ttl))
		if exp != tc.wantExp || mc != tc.wantMC {
			t.Errorf("expiry(%v) = %d, %d; want %d, %d", tc.ttl, exp, mc, tc.wantExp, tc.wantMC)
		}
	}
}

// TestTTLOnServer checks what the server holds: a sub-second TTL becomes a
// whole second (plus the second of clock slack), never 0; more than 30 days
// is sent as an absolute time (sent as relative seconds, Memcached would
// read it as a date in 1970 and drop the key at once); 0 never expires.
func TestTTLOnServer(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()
	month := 31 * 24 * time.Hour
	tests := []struct {
		name    string
		ttl     time.Duration
		wantTTL time.Duration // reported by Get
		server  int           // seconds on the server, -1 = never
	}{
		{"500ms", 500 * time.Millisecond, time.Second, 2},
		{"1s", time.Second, time.Second, 2},
		{"1.5s", 1500 * time.Millisecond, 2 * time.Second, 3},
		{"31days", month, month, int(month/time.Second) + 1},
		{"never", 0, 0, -1},
	}
	for _, tc := range tests {
		for _, kind := range []string{"counter", "block"} {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				key := kind + tc.name
				if kind == "counter" {
					if _, err := s.Incr(ctx, []string{key}, 1, tc.ttl); err != nil {
						t.Fatal(err)
					}
				} else if err := s.SetBlock(ctx, key, nil, tc.ttl); err != nil {
					t.Fatal(err)
				}
				e, err := s.Get(ctx, []string{key})
				if err != nil {
					t.Fatal(err)
				}
				if !e[0].Found || e[0].TTL != tc.wantTTL {
					t.Errorf("Get = %+v, want TTL %v", e[0], tc.wantTTL)
				}
				got, ok := serverTTL(t, addr, s.key(key))
				if !ok {
					t.Fatalf("key missing on the server")
				}
				// Relative TTLs may read one second short (the server's
				// clock ticks once a second). An absolute time (over 30
				// days) is turned into a TTL by the server against that
				// clock, which lags the real time by up to a second, so
				// it may read one second long as well.
				absolute := tc.ttl > 30*24*time.Hour
				if got != tc.server && !(tc.server > 2 && got == tc.server-1) && !(absolute && got == tc.server+1) {
					t.Errorf("server TTL %ds, want %ds", got, tc.server)
				}
			})
		}
	}
}

// TestSlidingTTL checks that every Incr restarts the TTL, on the value and
// on the server.
func TestSlidingTTL(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()
	const ttl = 2 * time.Second
	for i := int64(1); i <= 3; i++ {
		n, err := s.Incr(ctx, []string{"slide"}, 1, ttl)
		if err != nil || n[0] != i {
			t.Fatalf("Incr #%d = %v, %v", i, n, err)
		}
		if got, _ := serverTTL(t, addr, s.key("slide")); got != 3 {
			t.Fatalf("server TTL after Incr #%d = %d, want 3 (restarted)", i, got)
		}
		if e, _ := s.Get(ctx, []string{"slide"}); e[0].TTL != ttl {
			t.Fatalf("TTL after Incr #%d = %v, want %v", i, e[0].TTL, ttl)
		}
		if i < 3 {
			time.Sleep(1200 * time.Millisecond) // 2.4s in all: past the first TTL
		}
	}
	time.Sleep(ttl + 100*time.Millisecond)
	if e, _ := s.Get(ctx, []string{"slide"}); e[0].Found {
		t.Fatalf("counter alive %v after its last Incr with TTL %v: %+v", ttl+100*time.Millisecond, ttl, e[0])
	}
	// The server may still hold the value (its clock has a second's
	// slack): Incr must start afresh over it.
	if n, err := s.Incr(ctx, []string{"slide"}, 1, ttl); err != nil || n[0] != 1 {
		t.Fatalf("Incr after expiry = %v, %v; want [1]", n, err)
	}
}

// TestExpiredButHeld writes a value the server still holds but whose
// encoded expiry has passed: it is absent for every method.
func TestExpiredButHeld(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()
	past := time.Now().Add(-time.Second).UnixMilli()
	for _, it := range []*memcache.Item{
		{Key: s.key("c"), Value: encodeCounter(past, past+1000, 7), Flags: flagCounter, Expiration: 60},
		{Key: s.key("b"), Value: encodeBlock(past, []byte("x")), Flags: flagBlock, Expiration: 60},
	} {
		if err := s.c.Set(it); err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.Get(ctx, []string{"c", "b"})
	if err != nil || es[0].Found || es[1].Found {
		t.Fatalf("Get = %+v, %v; want both absent", es, err)
	}
	r := backend.Reservation{Blocks: []string{"b"}, Counters: []string{"c"}, TTL: time.Minute}
	if err := s.Reserve(ctx, &r); err != nil || r.Blocked != -1 || r.Counts[0] != 1 {
		t.Fatalf("Reserve = %+v, %v; want not blocked, count 1", r, err)
	}
}

func TestCorruptValues(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()
	bad := []*memcache.Item{
		{Key: "foreign", Value: []byte("1"), Flags: 0},
		{Key: "nohdr", Value: []byte("123"), Flags: flagBlock},
		{Key: "badexp", Value: []byte("x 1 2"), Flags: flagCounter},
		{Key: "noix", Value: []byte("0 1"), Flags: flagCounter},
		{Key: "badn", Value: []byte("0 -1 x"), Flags: flagCounter},
	}
	for _, it := range bad {
		key := it.Key
		it.Key = s.key(key)
		if err := s.c.Set(it); err != nil {
			t.Fatal(err)
		}
		t.Run(key, func(t *testing.T) {
			if _, err := s.Get(ctx, []string{key}); !errors.Is(err, backend.ErrInvalid) {
				t.Errorf("Get: %v, want ErrInvalid", err)
			}
			if _, err := s.Incr(ctx, []string{key}, 1, 0); !errors.Is(err, backend.ErrInvalid) {
				t.Errorf("Incr: %v, want ErrInvalid", err)
			}
			if err := s.Reserve(ctx, &backend.Reservation{Blocks: []string{key}}); !errors.Is(err, backend.ErrInvalid) {
				t.Errorf("Reserve: %v, want ErrInvalid", err)
			}
		})
	}
	// A counter over a block is refused too.
	if err := s.SetBlock(ctx, "blk", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, []string{"blk"}, 1, 0); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("Incr over a block: %v, want ErrInvalid", err)
	}
	// Scan reads the indexed key and reports the corruption.
	if err := s.c.Set(&memcache.Item{Key: s.key("blk"), Value: []byte("zz"), Flags: flagBlock}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Scan(ctx, "", "", 0); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("Scan over a corrupt value: %v, want ErrInvalid", err)
	}
	// Overflow.
	if _, err := s.Incr(ctx, []string{"big"}, math.MaxInt64, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, []string{"big"}, 1, 0); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("Incr past MaxInt64: %v, want ErrInvalid", err)
	}
	if _, err := s.Incr(ctx, []string{"small"}, math.MinInt64, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, []string{"small"}, -1, 0); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("Incr past MinInt64: %v, want ErrInvalid", err)
	}
}

// TestConcurrentFirstIncr: 1000 concurrent first increments of an absent
// key count exactly, each caller seeing a distinct value, within one Store
// and across Stores with their own clients (as separate processes would).
func TestConcurrentFirstIncr(t *testing.T) {
	_, addrs := startPool(t, 3)
	for _, stores := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d stores", stores), func(t *testing.T) {
			prefix := uniquePrefix()
			var ss []*Store
			for i := 0; i < stores; i++ {
				ss = append(ss, newStore(t, &Options{Prefix: prefix}, addrs...))
			}
			const n = 1000
			got := make([]int64, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					v, err := ss[i%stores].Incr(bg(), []string{"flood"}, 1, time.Minute)
					if err == nil {
						got[i] = v[0]
					}
					errs[i] = err
				}()
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			for i, v := range got {
				if v != int64(i+1) {
					t.Fatalf("sorted results[%d] = %d, want %d: increments lost or doubled", i, v, i+1)
				}
			}
			e, err := ss[0].Get(bg(), []string{"flood"})
			if err != nil || string(e[0].Value) != "1000" {
				t.Fatalf("final value %+v, %v; want 1000", e, err)
			}
		})
	}
}

func TestReserve(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()
	r := backend.Reservation{Blocks: []string{"b:ip", "b:user"}, Counters: []string{"c:ip", "c:user"}, TTL: time.Minute}
	for i := int64(1); i <= 3; i++ {
		if err := s.Reserve(ctx, &r); err != nil {
			t.Fatal(err)
		}
		if r.Blocked != -1 || !slices.Equal(r.Counts, []int64{i, i}) {
			t.Fatalf("Reserve #%d = blocked %d counts %v", i, r.Blocked, r.Counts)
		}
	}
	if err := s.SetBlock(ctx, "b:user", []byte("locked"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.Blocked != 1 || string(r.Block.Value) != "locked" || r.Block.TTL != time.Minute || len(r.Counts) != 0 {
		t.Fatalf("blocked Reserve = %+v", r)
	}
	if es, _ := s.Get(ctx, []string{"c:ip", "c:user"}); string(es[0].Value) != "3" || string(es[1].Value) != "3" {
		t.Fatalf("a blocked Reserve counted: %+v", es)
	}
	// Blocks only.
	if err := s.Reserve(ctx, &backend.Reservation{Blocks: []string{"b:ip"}}); err != nil {
		t.Fatal(err)
	}
}

// TestReserveRaceWithBlock makes a reservation lose its compare-and-swap to
// a Block that sets the block and deletes the counter in between: the
// retry must see the block, count nothing and refund the counter it had
// already incremented (backend.Reserve's ordering rule).
func TestReserveRaceWithBlock(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	other := newStore(t, &Options{Prefix: s.prefix}, addr)
	ctx := bg()
	if _, err := s.Incr(ctx, []string{"c:ip", "c:user"}, 4, time.Minute); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	testHookBeforeWrite = func(st *Store, key string) {
		if st != s || key != "c:user" {
			return
		}
		once.Do(func() {
			res, err := other.Block(ctx, backend.BlockRequest{
				BlockKey: "b:user", Value: []byte("v"), CounterKey: "c:user",
				LockoutsKey: "l:user", Window: time.Hour, Durations: []time.Duration{time.Minute},
			})
			if err != nil || res.Lockouts != 1 || res.Duration != time.Minute {
				t.Errorf("Block = %+v, %v", res, err)
			}
		})
	}
	defer func() { testHookBeforeWrite = nil }()
	r := backend.Reservation{Blocks: []string{"b:ip", "b:user"}, Counters: []string{"c:ip", "c:user"}, TTL: time.Minute}
	if err := s.Reserve(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.Blocked != 1 || len(r.Counts) != 0 {
		t.Fatalf("Reserve = blocked %d counts %v; want blocked by b:user", r.Blocked, r.Counts)
	}
	es, _ := s.Get(ctx, []string{"c:ip", "c:user"})
	if string(es[0].Value) != "4" || (es[1].Found && string(es[1].Value) != "0") {
		t.Fatalf("counters after the race: %+v; want c:ip refunded to 4, c:user deleted by Block (or refunded to 0)", es)
	}
}

// TestCrossProcessContention makes the first "cas" of every increment lose
// against another client, so the loop re-reads and backs off.
func TestCrossProcessContention(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	other := newStore(t, &Options{Prefix: s.prefix}, addr)
	ctx := bg()
	var mu sync.Mutex
	meddle := 3
	testHookBeforeWrite = func(st *Store, key string) {
		if st != s {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if meddle > 0 {
			meddle--
			if _, err := other.Incr(ctx, []string{key}, 10, time.Minute); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { testHookBeforeWrite = nil }()
	n, err := s.Incr(ctx, []string{"k"}, 1, time.Minute)
	testHookBeforeWrite = nil
	if err != nil || n[0] != 31 {
		t.Fatalf("Incr = %v, %v; want [31] (three meddling +10 first)", n, err)
	}
	// A cancelled context stops the loop in its back-off.
	meddle = 100
	cctx, cancel := context.WithCancel(ctx)
	testHookBeforeWrite = func(st *Store, key string) {
		if st != s {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if meddle--; meddle == 98 {
			cancel()
		}
		if _, err := other.Incr(ctx, []string{key}, 1, time.Minute); err != nil {
			t.Error(err)
		}
	}
	if _, err := s.Incr(cctx, []string{"k"}, 1, time.Minute); !errors.Is(err, context.Canceled) || !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("Incr with cancel during contention: %v", err)
	}
	s.calls.Wait() // the abandoned loop ends at its next context check
	// Endless contention gives up after maxCASAttempts.
	testHookBeforeWrite = func(st *Store, key string) {
		if st != s {
			return
		}
		if _, err := other.Incr(ctx, []string{key}, 1, time.Minute); err != nil {
			t.Error(err)
		}
	}
	if _, err := s.Incr(ctx, []string{"k"}, 1, time.Minute); !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "conflicts") {
		t.Fatalf("Incr under endless contention: %v", err)
	}
}

func TestBlock(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()
	durs := []time.Duration{time.Minute, time.Hour, 0}
	want := []time.Duration{time.Minute, time.Hour, 0, 0}
	for i, d := range want {
		if _, err := s.Incr(ctx, []string{"c:u"}, 5, time.Minute); err != nil {
			t.Fatal(err)
		}
		res, err := s.Block(ctx, backend.BlockRequest{
			BlockKey: "b:u", Value: []byte("u"), CounterKey: "c:u",
			LockoutsKey: "l:u", Window: 24 * time.Hour, Durations: durs,
		})
		if err != nil || res.Lockouts != int64(i+1) || res.Duration != d {
			t.Fatalf("Block #%d = %+v, %v; want %d lockouts, %v", i+1, res, err, i+1, d)
		}
		es, _ := s.Get(ctx, []string{"b:u", "c:u", "l:u"})
		if !es[0].Found || es[0].TTL != d || es[1].Found || string(es[2].Value) != fmt.Sprint(i+1) {
			t.Fatalf("after Block #%d: %+v", i+1, es)
		}
	}
	// Without a counter key.
	if _, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b:v", LockoutsKey: "l:v", Durations: durs}); err != nil {
		t.Fatal(err)
	}
	es, _, err := s.Scan(ctx, "b:", "", 0)
	if err != nil || len(es) != 2 {
		t.Fatalf("Scan(b:) = %+v, %v; want both blocks", es, err)
	}
}

func TestScanPaging(t *testing.T) {
	_, addrs := startPool(t, 3)
	s := newStore(t, &Options{IndexShards: 3}, addrs...)
	ctx := bg()
	want := map[string]bool{}
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("x:c%02d", i)
		if _, err := s.Incr(ctx, []string{k}, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		want[k] = true
		k = fmt.Sprintf("x:b%02d", i)
		if err := s.SetBlock(ctx, k, []byte(k), 0); err != nil {
			t.Fatal(err)
		}
		want[k] = true
	}
	if _, err := s.Incr(ctx, []string{"y:other"}, 1, 0); err != nil {
		t.Fatal(err)
	}
	// Deleted keys linger in the index but are not listed.
	if err := s.Delete(ctx, "x:c00", "x:b00"); err != nil {
		t.Fatal(err)
	}
	delete(want, "x:c00")
	delete(want, "x:b00")
	got := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		es, next, err := s.Scan(ctx, "x:", cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) > 7 {
			t.Fatalf("page of %d", len(es))
		}
		for _, e := range es {
			if got[e.Key] {
				t.Errorf("%q listed twice", e.Key)
			}
			got[e.Key] = true
			if strings.HasPrefix(e.Key, "x:b") && string(e.Value) != e.Key {
				t.Errorf("block %q has value %q", e.Key, e.Value)
			}
		}
		pages++
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(want) || pages < 12 {
		t.Fatalf("Scan listed %d keys in %d pages, want %d keys in >= 12 pages", len(got), pages, len(want))
	}
	for k := range want {
		if !got[k] {
			t.Errorf("Scan missed %q", k)
		}
	}
	if es, next, err := s.Scan(ctx, "zzz", "", 0); err != nil || len(es) != 0 || next != "" {
		t.Fatalf("Scan(zzz) = %v, %q, %v", es, next, err)
	}
}

// TestIndexBounds fills one small index shard: expired members are pruned,
// members that no longer exist make room, and what still does not fit is
// left out, counted and logged.
func TestIndexBounds(t *testing.T) {
	addr := testserver.StartMemcached(t)
	var logs bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	s := newStore(t, &Options{IndexShards: 1, IndexShardBytes: 210, Logger: lg}, addr)
	ctx := bg()
	key := func(i int) string { return fmt.Sprintf("k%038d", i) } // 39 bytes: 5 fit with permanent entries
	scan := func(s *Store) []backend.Entry {
		t.Helper()
		es, _, err := s.Scan(ctx, "", "", 0) // waits for the compactions asked for
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	for i := 0; i < 6; i++ {
		if err := s.SetBlock(ctx, key(i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	if es := scan(s); len(es) != 5 {
		t.Fatalf("Scan listed %d, want 5", len(es))
	}
	if st := s.Stats(); st.IndexOverflow != 1 || strings.Count(logs.String(), "index shard full") != 1 {
		t.Fatalf("Stats = %+v, log %q; want one overflow, logged", st, logs.String())
	}
	// The block itself is set; only the listing misses it.
	if es, _ := s.Get(ctx, []string{key(5)}); !es[0].Found {
		t.Fatal("overflowing block not set")
	}
	// Deleted members make room.
	if err := s.Delete(ctx, key(0), key(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBlock(ctx, key(6), nil, 0); err != nil {
		t.Fatal(err)
	}
	if es := scan(s); len(es) != 4 || s.Stats().IndexOverflow != 1 {
		t.Fatalf("Scan listed %d (want 4), Stats %+v", len(es), s.Stats())
	}
	// Expired members are pruned.
	s2 := newStore(t, &Options{IndexShards: 1, IndexShardBytes: 280}, addr) // 5 expiring members (54 bytes each) fit, 6 do not
	for i := 0; i < 5; i++ {
		if err := s2.SetBlock(ctx, key(i), nil, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	if err := s2.SetBlock(ctx, strings.Repeat("z", 150), nil, 0); err != nil {
		t.Fatal(err)
	}
	if es := scan(s2); len(es) != 1 {
		t.Fatalf("Scan listed %d, want 1", len(es))
	}
	if st := s2.Stats(); st.IndexOverflow != 0 {
		t.Fatalf("expired members not pruned: %+v", st)
	}
	if v, _ := s2.c.Get(s2.shardKey(familyBlocks, 0)); strings.Count(string(v.Value), "\n") != 1 {
		t.Fatalf("index shard after pruning: %q", v.Value)
	}
}

// TestIndexAtItemLimit lets a shard reach the server's item size limit
// (-I 1k) before any background compaction: the refused append compacts
// the shard at once, and SetBlock succeeds.
func TestIndexAtItemLimit(t *testing.T) {
	m := testserver.NewMemcached(t, "-I", "1k", "-o", "slab_chunk_max=512")
	s := newStore(t, &Options{IndexShards: 1, IndexShardBytes: 900}, m.Addr)
	s.compactEvery = 1 << 40 // no background compaction
	ctx := bg()
	for i := 0; i < 40; i++ {
		if err := s.SetBlock(ctx, fmt.Sprintf("k%038d", i), nil, 0); err != nil {
			t.Fatalf("SetBlock #%d: %v", i, err)
		}
	}
	es, _, err := s.Scan(ctx, "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	// Compactions keep 900 bytes (21 lines of 42 bytes), appends go on to
	// the server's 1 KiB limit (24 lines).
	if n := len(es); n < 21 || n > 24 || s.Stats().IndexOverflow != int64(40-n) {
		t.Fatalf("Scan listed %d, Stats %+v; want 21..24 listed, the rest counted", n, s.Stats())
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}

func TestIndexFormat(t *testing.T) {
	m, order, lines := parseIndex([]byte("0 a\n12 b\nbad\n5 \nx y\n7 c\n3 b\n20 c"))
	want := map[string]int64{"a": 0, "b": 12, "c": 20}
	if len(m) != len(want) || lines != 8 || strings.Join(order, ",") != "a,b,c" {
		t.Fatalf("parseIndex = %v, %v, %d; want %v in order a,b,c from 8 lines", m, order, lines, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Fatalf("parseIndex = %v, want %v", m, want)
		}
	}
	if got := string(encodeIndex(want)); got != "0 a\n12 b\n20 c\n" {
		t.Fatalf("encodeIndex = %q", got)
	}
	tests := []struct {
		a, b int64
		want bool
	}{{0, 0, false}, {0, 5, true}, {5, 0, false}, {6, 5, true}, {5, 6, false}}
	for _, tc := range tests {
		if later(tc.a, tc.b) != tc.want {
			t.Errorf("later(%d, %d) != %v", tc.a, tc.b, tc.want)
		}
	}
	plans := []struct {
		ix, exp, secs int64
		want          int64
		reindex       bool
	}{
		{-1, 0, 0, 0, true},
		{5, 0, 0, 0, true},
		{0, 0, 0, 0, false},
		{-1, 10_000, 10, 20_000, true},
		{20_000, 15_000, 10, 20_000, false},
		{20_000, 21_000, 10, 31_000, true},
		{0, 21_000, 10, 0, false},
	}
	for _, p := range plans {
		got, re := indexPlan(p.ix, p.exp, p.secs)
		if got != p.want || re != p.reindex {
			t.Errorf("indexPlan(%d, %d, %d) = %d, %v; want %d, %v", p.ix, p.exp, p.secs, got, re, p.want, p.reindex)
		}
	}
}

// TestIndexQueueFull drops counter index updates when the indexer's queue
// is full, counts them and logs once.
func TestIndexQueueFull(t *testing.T) {
	var logs bytes.Buffer
	w := &syncWriter{w: &logs}
	s := &Store{ixq: make(chan ixReq, 1), log: slog.New(slog.NewTextHandler(w, nil))}
	s.enqueueIndex("a", 0)
	s.enqueueIndex("b", 0)
	s.enqueueIndex("c", 0)
	if s.Stats().IndexDropped != 2 || strings.Count(w.String(), "queue full") != 1 {
		t.Fatalf("Stats %+v, log %q", s.Stats(), w.String())
	}
}

func TestClosed(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s, err := New(newClient(addr), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(bg(), []string{"k"}, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := bg()
	calls := map[string]func() error{
		"Incr":     func() error { _, err := s.Incr(ctx, []string{"k"}, 1, 0); return err },
		"Get":      func() error { _, err := s.Get(ctx, []string{"k"}); return err },
		"SetBlock": func() error { return s.SetBlock(ctx, "k", nil, 0) },
		"Delete":   func() error { return s.Delete(ctx, "k") },
		"Scan":     func() error { _, _, err := s.Scan(ctx, "", "", 0); return err },
		"Reserve":  func() error { return s.Reserve(ctx, &backend.Reservation{Counters: []string{"k"}}) },
		"Block": func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Durations: []time.Duration{1}})
			return err
		},
		"flush": func() error { return s.flush(ctx) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, backend.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestCancelled(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx, cancel := context.WithCancel(bg())
	cancel()
	calls := map[string]func() error{
		"Incr":     func() error { _, err := s.Incr(ctx, []string{"k"}, 1, 0); return err },
		"Get":      func() error { _, err := s.Get(ctx, []string{"k"}); return err },
		"SetBlock": func() error { return s.SetBlock(ctx, "k", nil, 0) },
		"Delete":   func() error { return s.Delete(ctx, "k") },
		"Scan":     func() error { _, _, err := s.Scan(ctx, "", "", 0); return err },
		"flush":    func() error { return s.flush(ctx) },
		"Reserve":  func() error { return s.Reserve(ctx, &backend.Reservation{Counters: []string{"k"}}) },
		"Block": func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "l", Durations: []time.Duration{1}})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) || !errors.Is(err, backend.ErrUnavailable) {
			t.Errorf("%s with a cancelled context: %v, want ErrUnavailable and context.Canceled", name, err)
		}
	}
	// A context cancelled while waiting for the key's lock.
	lock := s.locks[stripeOf("held")]
	lock <- struct{}{}
	if _, err := s.Incr(ctx, []string{"held"}, 1, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Incr: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(bg(), 50*time.Millisecond)
	defer cancel2()
	if _, _, _, err := s.incrOne(ctx2, "held", nil, time.Now(), 1, 0, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("incrOne waiting for its lock: %v", err)
	}
	<-lock
}

func TestStatsWithoutServers(t *testing.T) {
	s, err := New(memcache.New("127.0.0.1:1"), &Options{EvictionCheck: -1, Servers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st != (Stats{}) {
		t.Fatalf("Stats = %+v", st)
	}
}

// TestStaleReadIsReadAgain: a counter read older than tombstoneGuard is not
// written from (a tombstone written after it may have expired since): it is
// read again first.
func TestStaleReadIsReadAgain(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	ctx := bg()
	if _, err := s.Incr(ctx, []string{"k"}, 5, time.Minute); err != nil {
		t.Fatal(err)
	}
	writes := 0
	testHookBeforeWrite = func(st *Store, key string) {
		if st == s {
			writes++
		}
	}
	defer func() { testHookBeforeWrite = nil }()
	n, wrote, retried, err := s.incrOne(ctx, "k", nil, time.Now().Add(-2*tombstoneGuard), 1, time.Minute, true)
	if err != nil || n != 6 || !wrote || !retried || writes != 1 {
		t.Fatalf("incrOne from a stale read = %d, wrote %v, retried %v, %v, %d writes; want 6 after one fresh read and one write", n, wrote, retried, err, writes)
	}
	// A refund of a counter that is gone leaves it gone.
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := s.refund(ctx, "k", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.refund(ctx, "never", time.Minute); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.Get(ctx, []string{"k", "never"}); es[0].Found || es[1].Found {
		t.Fatalf("refund recreated a counter: %+v", es)
	}
}
