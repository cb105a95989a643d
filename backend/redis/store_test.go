package redis

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

func TestMillis(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want int64
	}{
		{0, 0}, {-time.Second, 0}, {time.Nanosecond, 1}, {time.Millisecond, 1},
		{time.Millisecond + 1, 2}, {1500 * time.Microsecond, 2}, {time.Minute, 60000},
	} {
		if got := ms(tc.in); got != tc.want {
			t.Errorf("ms(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   int64
		want time.Duration
	}{
		{-1, 0}, {0, time.Millisecond}, {1, time.Millisecond}, {2500, 2500 * time.Millisecond},
	} {
		if got := pttl(tc.in); got != tc.want {
			t.Errorf("pttl(%d) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestIncrTTLAtomic checks on the server that a counter always has the TTL
// it was written with and that ttl 0 persists it.
func TestIncrTTLAtomic(t *testing.T) {
	_, c := standalone(t)
	s := openStore(t, c)
	ctx := tctx(t)
	mustIncr(t, s, []string{"k"}, 5, time.Minute)
	if d := c.PTTL(ctx, s.prefix+"k").Val(); d <= 59*time.Second || d > time.Minute {
		t.Fatalf("PTTL = %v, want about a minute", d)
	}
	mustIncr(t, s, []string{"k"}, -2, 0)
	if d := c.PTTL(ctx, s.prefix+"k").Val(); d != -1 {
		t.Fatalf("PTTL after ttl 0 = %v, want -1 (persistent)", d)
	}
	if v := c.Get(ctx, s.prefix+"k").Val(); v != "3" {
		t.Fatalf("value = %q, want 3", v)
	}
	// Sub-millisecond TTLs round up, never to 0 (= persistent).
	mustIncr(t, s, []string{"sub"}, 1, time.Microsecond)
	if d := c.PTTL(ctx, s.prefix+"sub").Val(); d == -1 {
		t.Fatal("a 1µs TTL made the key persistent")
	}
}

func TestSetBlockTTL(t *testing.T) {
	_, c := standalone(t)
	s := openStore(t, c)
	ctx := tctx(t)
	for _, tc := range []struct {
		ttl  time.Duration
		want time.Duration // -1: persistent
	}{
		{0, -1}, {time.Minute, time.Minute}, {1500 * time.Microsecond, 2 * time.Millisecond},
	} {
		if err := s.SetBlock(ctx, "b", []byte("v"), tc.ttl); err != nil {
			t.Fatal(err)
		}
		d := c.PTTL(ctx, s.prefix+"b").Val()
		if tc.want == -1 && d != -1 || tc.want > 0 && (d <= 0 || d > tc.want) {
			t.Errorf("SetBlock ttl %v: PTTL %v, want %v", tc.ttl, d, tc.want)
		}
	}
}

func TestPrefixNamespacing(t *testing.T) {
	_, c := standalone(t)
	ctx := tctx(t)
	a := New(c, &Options{Prefix: "a:"})
	b := New(c, nil)
	defer a.Close()
	defer b.Close()
	mustIncr(t, a, []string{"k"}, 1, 0)
	mustIncr(t, b, []string{"k"}, 7, 0)
	if v := c.Get(ctx, "a:k").Val(); v != "1" {
		t.Errorf("a:k = %q", v)
	}
	if v := c.Get(ctx, "k").Val(); v != "7" {
		t.Errorf("k = %q", v)
	}
	es, next, err := a.Scan(ctx, "", "", 0)
	if err != nil || next != "" || len(es) != 1 || es[0].Key != "k" || string(es[0].Value) != "1" {
		t.Fatalf("Scan a = %+v %q %v", es, next, err)
	}
	if a.Client() != goredis.UniversalClient(c) {
		t.Error("Client() is not the given client")
	}
}

// TestScanGlobPrefix: glob characters in the store prefix and the scan
// prefix are literal.
func TestScanGlobPrefix(t *testing.T) {
	_, c := standalone(t)
	ctx := tctx(t)
	s := New(c, &Options{Prefix: `p*[?]\:`})
	defer s.Close()
	other := New(c, &Options{Prefix: `pX[?]\:`})
	defer other.Close()
	for _, k := range []string{"a*b", "a?c", "a[1]", `a\d`, "ab", "zz"} {
		mustIncr(t, s, []string{k}, 1, time.Minute)
		mustIncr(t, other, []string{k}, 1, time.Minute)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"a*", []string{"a*b"}},
		{"a?", []string{"a?c"}},
		{"a[", []string{"a[1]"}},
		{`a\`, []string{`a\d`}},
		{"a", []string{"a*b", "a?c", "a[1]", `a\d`, "ab"}},
		{"", []string{"a*b", "a?c", "a[1]", `a\d`, "ab", "zz"}},
		{"q", nil},
	} {
		var got []string
		cur := ""
		for {
			es, next, err := s.Scan(ctx, tc.prefix, cur, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) > 2 {
				t.Fatalf("page of %d > limit 2", len(es))
			}
			for _, e := range es {
				got = append(got, e.Key)
				if e.TTL <= 0 || e.TTL > time.Minute || string(e.Value) != "1" {
					t.Errorf("entry %+v", e)
				}
			}
			if next == "" {
				break
			}
			cur = next
		}
		sort.Strings(got)
		sort.Strings(tc.want)
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("Scan(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// TestScanBatchLargerThanPage forces SCAN batches larger than the page, so
// that a page resumes inside a batch, and checks every key comes exactly once.
func TestScanBatchLargerThanPage(t *testing.T) {
	_, c := standalone(t)
	ctx := tctx(t)
	s := openStore(t, c)
	const n = 300
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	mustIncr(t, s, keys, 1, 0)
	seen := map[string]int{}
	cur := ""
	pages := 0
	for {
		es, next, err := s.Scan(ctx, "k", cur, 7)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(es) > 7 {
			t.Fatalf("page of %d entries > 7", len(es))
		}
		for _, e := range es {
			seen[e.Key]++
			if e.TTL != 0 {
				t.Errorf("%s: TTL %v, want 0", e.Key, e.TTL)
			}
		}
		if next == "" {
			break
		}
		// A larger COUNT than the page: batches overflow the page.
		cc, err := decodeCursor(next)
		if err != nil {
			t.Fatal(err)
		}
		if cc.last == "" {
			cc.count = 50
		}
		cur = cc.encode()
	}
	if len(seen) != n {
		t.Fatalf("saw %d keys, want %d", len(seen), n)
	}
	for k, v := range seen {
		if v != 1 {
			t.Errorf("%s seen %d times", k, v)
		}
	}
	t.Logf("%d keys in %d pages", n, pages)
}

func TestScanBadCursor(t *testing.T) {
	_, c := standalone(t)
	s := openStore(t, c)
	for _, cur := range []string{
		"!!!",
		cursor{shard: "0", count: 1}.encode()[:3],
		base64URL("0\nx\n1\n"),
		base64URL("0\n1\n0\n"),
		base64URL("0\n1\n"),
	} {
		if _, _, err := s.Scan(tctx(t), "", cur, 10); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("Scan cursor %q: %v, want ErrInvalid", cur, err)
		}
	}
}

func TestLessID(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"2", "10", true}, {"10", "2", false}, {"a:1", "b:1", true}, {"b", "a", false},
	} {
		if got := lessID(tc.a, tc.b); got != tc.want {
			t.Errorf("lessID(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

func TestConcurrentIncrExact(t *testing.T) {
	_, c := standalone(t)
	rc := testserver.StartRedisCluster(t, 3, 0)
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: rc.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = cc.Close() })
	for _, tc := range []struct {
		name   string
		client goredis.UniversalClient
	}{
		{"standalone", c},
		{"cluster", cc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, tc.client)
			const n = 1000
			ctx := tctx(t)
			var wg sync.WaitGroup
			got := make([]int64, n)
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					// The engine's keys: the username's counter and the IP's.
					v, err := s.Incr(ctx, []string{"defender:{user:bob}:f", fmt.Sprintf("defender:{ip:10.0.%d.%d}:f", i%4, i%8)}, 1, time.Minute)
					if err != nil {
						errs <- err
						return
					}
					got[i] = v[0]
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			for i, v := range got {
				if v != int64(i+1) {
					t.Fatalf("sorted results[%d] = %d: increments lost or doubled", i, v)
				}
			}
			es, err := s.Get(ctx, []string{"defender:{user:bob}:f"})
			if err != nil || string(es[0].Value) != strconv.Itoa(n) {
				t.Fatalf("final = %+v, %v; want %d", es, err, n)
			}
			// 1000 concurrent reservations: each one counted once.
			r := make([]int64, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					res := backend.Reservation{
						Blocks:   []string{"defender:{user:ann}:b", "defender:{ip:1.2.3.4}:b"},
						Counters: []string{"defender:{user:ann}:f", "defender:{ip:1.2.3.4}:f"},
						TTL:      time.Minute,
					}
					if err := s.Reserve(ctx, &res); err != nil {
						t.Error(err)
						return
					}
					r[i] = res.Counts[0]
				}(i)
			}
			wg.Wait()
			sort.Slice(r, func(i, j int) bool { return r[i] < r[j] })
			for i, v := range r {
				if v != int64(i+1) {
					t.Fatalf("sorted reservations[%d] = %d", i, v)
				}
			}
			t.Logf("%s: %d concurrent increments and %d concurrent reservations, exact", tc.name, n, n)
		})
	}
}

func TestContextCancelled(t *testing.T) {
	_, c := standalone(t)
	s := openStore(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Incr(ctx, []string{"k"}, 1, 0)
	if !errors.Is(err, context.Canceled) || errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("cancelled Incr: %v, want context.Canceled only", err)
	}
	dl, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	_, err = s.Incr(dl, []string{"k"}, 1, 0)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("expired Incr: %v, want DeadlineExceeded and ErrUnavailable", err)
	}
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestLargeValues: deltas and TTLs are passed to Redis as decimal strings,
// never through Lua's floating-point numbers.
func TestLargeValues(t *testing.T) {
	_, c := standalone(t)
	s := openStore(t, c)
	ctx := tctx(t)
	const big = int64(1)<<62 + 1
	if n := mustIncr(t, s, []string{"k"}, big, 0); n[0] != big {
		t.Fatalf("Incr by %d = %d", big, n[0])
	}
	if n := mustIncr(t, s, []string{"k"}, -big, 0); n[0] != 0 {
		t.Fatalf("Incr back = %d", n[0])
	}
	if n := mustIncr(t, s, []string{"k"}, -big, 0); n[0] != -big {
		t.Fatalf("Incr negative = %d", n[0])
	}
	if err := c.Set(ctx, s.prefix+"r", int64(1)<<53, 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := backend.Reservation{Blocks: []string{"none"}, Counters: []string{"r"}}
	if err := s.Reserve(ctx, &r); err != nil || r.Counts[0] != 1<<53+1 {
		t.Fatalf("Reserve past 2^53 = %v, %v", r.Counts, err)
	}
	long := 100 * 365 * 24 * time.Hour
	if n := mustIncr(t, s, []string{"long"}, 1, long+time.Millisecond); n[0] != 1 {
		t.Fatal(n)
	}
	if d := c.PTTL(ctx, s.prefix+"long").Val(); d < long {
		t.Errorf("PTTL %v, want > %v", d, long)
	}
	res, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "n", Window: long, Durations: []time.Duration{long + 7*time.Millisecond}})
	if err != nil || res.Duration != long+7*time.Millisecond {
		t.Fatalf("Block = %+v, %v", res, err)
	}
}
