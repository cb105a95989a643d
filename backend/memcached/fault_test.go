package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

// keysPerServer returns, for each address, a key that s places on it.
func keysPerServer(t *testing.T, s *Store, addrs []string) map[string]string {
	t.Helper()
	var sl memcache.ServerList
	if err := sl.SetServers(addrs...); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for i := 0; len(out) < len(addrs); i++ {
		k := fmt.Sprintf("key%d", i)
		a, err := sl.PickServer(s.key(k))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := out[a.String()]; !ok {
			out[a.String()] = k
		}
	}
	return out
}

// TestServerOutage stops one server of a pool of three mid-run: calls on
// its keys fail with ErrUnavailable within the client's timeout, calls on
// the other servers' keys go on, and after the restart counting works
// again.
func TestServerOutage(t *testing.T) {
	ms, addrs := startPool(t, 3)
	c := memcache.New(addrs...)
	c.Timeout = 200 * time.Millisecond
	c.MaxIdleConns = 4
	s, err := New(c, &Options{Prefix: uniquePrefix()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := bg()
	keys := keysPerServer(t, s, addrs)
	down, up := keys[addrs[1]], keys[addrs[0]]
	for _, k := range keys {
		if _, err := s.Incr(ctx, []string{k}, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	ms[1].Stop()
	const bound = time.Second // the 200ms timeout plus a generous margin for a loaded machine
	calls := map[string]func() error{
		"Incr":     func() error { _, err := s.Incr(ctx, []string{down}, 1, time.Minute); return err },
		"Get":      func() error { _, err := s.Get(ctx, []string{up, down}); return err },
		"SetBlock": func() error { return s.SetBlock(ctx, down, nil, time.Minute) },
		"Delete":   func() error { return s.Delete(ctx, down) },
		"Reserve": func() error {
			return s.Reserve(ctx, &backend.Reservation{Blocks: []string{up}, Counters: []string{down}, TTL: time.Minute})
		},
		"Block": func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: up, LockoutsKey: down, Durations: []time.Duration{time.Minute}})
			return err
		},
	}
	for name, call := range calls {
		for i := 0; i < 3; i++ { // also wears out idle connections to the dead server
			start := time.Now()
			err := call()
			if el := time.Since(start); el > bound {
				t.Errorf("%s took %v with a server down, want < %v", name, el, bound)
			}
			if !errors.Is(err, backend.ErrUnavailable) {
				t.Errorf("%s with its server down: %v, want ErrUnavailable", name, err)
			}
		}
	}
	// Keys on the other servers still count.
	if n, err := s.Incr(ctx, []string{up}, 1, time.Minute); err != nil || n[0] != 2 {
		t.Fatalf("Incr on a live server = %v, %v; want [2]", n, err)
	}
	ms[1].Start()
	n, err := s.Incr(ctx, []string{down}, 1, time.Minute)
	if err != nil || n[0] != 1 {
		t.Fatalf("Incr after the restart = %v, %v; want [1] (the restarted server is empty)", n, err)
	}
	r := backend.Reservation{Blocks: []string{"b" + up, "b" + down}, Counters: []string{up, down}, TTL: time.Minute}
	if err := s.Reserve(ctx, &r); err != nil || r.Blocked != -1 || len(r.Counts) != 2 || r.Counts[0] != 3 || r.Counts[1] != 2 {
		t.Fatalf("Reserve after the restart = %+v, %v", r, err)
	}
}

// TestUnansweringServer talks to a server that accepts connections and
// never answers: calls return after the client's timeout with
// ErrUnavailable, wrapping the context's error when its deadline passed.
func TestUnansweringServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	c := memcache.New(l.Addr().String())
	c.Timeout = 150 * time.Millisecond
	s, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(bg(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Incr(ctx, []string{"k"}, 1, time.Minute)
	if el := time.Since(start); el > time.Second {
		t.Errorf("Incr took %v, want about the 150ms timeout", el)
	}
	if !errors.Is(err, backend.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Incr: %v, want ErrUnavailable wrapping context.DeadlineExceeded", err)
	}
	// Scan's index flush cannot write either: the indexer reports it.
	if _, _, err := s.Scan(bg(), "", "", 0); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Scan: %v, want ErrUnavailable", err)
	}
}

// TestIndexerRetries queues counter index updates while the index shard's
// server is down: they stay pending, are retried, and are written once it
// is back, so Scan lists the counters.
func TestIndexerRetries(t *testing.T) {
	m := testserver.NewMemcached(t)
	s := newStore(t, &Options{IndexShards: 1}, m.Addr)
	ctx := bg()
	m.Stop()
	s.enqueueIndex("c1", 0)
	if err := s.flush(ctx); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("flush with the server down: %v", err)
	}
	m.Start()
	if _, err := s.Incr(ctx, []string{"c1"}, 1, 0); err != nil {
		t.Fatal(err)
	}
	s.enqueueIndex("c1", 0) // Incr indexed it already; make sure the retry path is the one tested
	es, _, err := s.Scan(ctx, "", "", 0)
	if err != nil || len(es) != 1 || es[0].Key != "c1" {
		t.Fatalf("Scan after recovery = %+v, %v", es, err)
	}
}

// TestIndexerPendingBound drops pending updates beyond IndexQueue while the
// server is down, and counts them.
func TestIndexerPendingBound(t *testing.T) {
	m := testserver.NewMemcached(t)
	s := newStore(t, &Options{IndexShards: 2, IndexQueue: 2}, m.Addr)
	m.Stop()
	pending := map[int]map[string]int64{
		0: {"a": 0, "b": 0},
		1: {"c": 0, "d": 0},
	}
	if err := s.flushIndex(pending); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("flushIndex: %v", err)
	}
	if len(pending) != 1 || s.Stats().IndexDropped != 2 {
		t.Fatalf("pending %v, Stats %+v; want one shard kept, two updates dropped", pending, s.Stats())
	}
}

// TestCloseFlushesIndex: Close writes the counter index updates still
// queued.
func TestCloseFlushesIndex(t *testing.T) {
	addr := testserver.StartMemcached(t)
	prefix := uniquePrefix()
	s, err := New(newClient(addr), &Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := s.Incr(bg(), []string{fmt.Sprint("c", i)}, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s2 := newStore(t, &Options{Prefix: prefix}, addr)
	es, _, err := s2.Scan(bg(), "", "", 1000)
	if err != nil || len(es) != 50 {
		t.Fatalf("Scan after Close = %d entries, %v; want 50", len(es), err)
	}
}

func TestEvictionWarning(t *testing.T) {
	m := testserver.NewMemcached(t, "-m", "2")
	var logs bytes.Buffer
	w := &syncWriter{w: &logs}
	lg := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dead := testserver.Addr(testserver.FreePort(t))
	s := newStore(t, &Options{Logger: lg, Servers: []string{m.Addr, dead}, EvictionCheck: 20 * time.Millisecond}, m.Addr)
	v := []byte(strings.Repeat("x", 100<<10))
	for i := 0; i < 100; i++ {
		if err := s.c.Set(&memcache.Item{Key: fmt.Sprint("filler", i), Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(w.String(), "evicted items") {
		if time.Now().After(deadline) {
			t.Fatalf("no eviction warning; log: %s", w.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log, not waiting out a race
	}
	if s.Stats().Evictions == 0 {
		t.Fatalf("Stats.Evictions = 0 after a warning")
	}
	if !strings.Contains(w.String(), "eviction check failed") {
		t.Fatalf("no debug line for the dead server; log: %s", w.String())
	}
}

// statsServer answers "stats" with a fixed reply.
func statsServer(t *testing.T, reply string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

func TestServerEvictions(t *testing.T) {
	tests := []struct {
		reply string
		want  int64
		err   string
	}{
		{"STAT pid 1\r\nSTAT evictions 42\r\nEND\r\n", 42, ""},
		{"STAT pid 1\r\nEND\r\n", 0, "no evictions"},
		{"STAT evictions x\r\nEND\r\n", 0, "bad evictions"},
		{"STAT pid 1\r\n", 0, "EOF"},
	}
	for _, tc := range tests {
		addr := statsServer(t, tc.reply)
		s := &Store{c: memcache.New(addr)}
		n, err := s.serverEvictions(addr)
		if tc.err == "" && (err != nil || n != tc.want) {
			t.Errorf("reply %q: %d, %v; want %d", tc.reply, n, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("reply %q: error %v, want %q", tc.reply, err, tc.err)
		}
	}
	// Through the client's DialContext, and over a Unix socket path.
	addr := statsServer(t, "STAT evictions 7\r\nEND\r\n")
	dialed := ""
	s := &Store{c: &memcache.Client{Timeout: time.Second, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		dialed = network + " " + a
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}}
	if n, err := s.serverEvictions("/run/memcached.sock"); err != nil || n != 7 || dialed != "unix /run/memcached.sock" {
		t.Errorf("via DialContext: %d, %v, dialed %q", n, err, dialed)
	}
}

func TestOpenURL(t *testing.T) {
	addr := testserver.StartMemcached(t)
	tests := []struct {
		url  string
		want string // error substring; "" = opens
	}{
		{"memcached://" + addr, ""},
		{"memcached://" + addr + "/?prefix=app:&timeout=50ms&max_idle=8", ""},
		{"memcached://" + addr + "," + addr, ""},
		{"memcached://user:s3cret@" + addr, "no user or password"},
		{"memcached://" + addr + "/db", "unexpected path"},
		{"memcached://", "no server"},
		{"memcached://," + addr, "empty server"},
		{"memcached://" + addr + "?colour=red", "unknown query parameter(s) colour"},
		{"memcached://" + addr + "?timeout=soon", "timeout"},
		{"memcached://" + addr + "?timeout=-1s", "timeout"},
		{"memcached://" + addr + "?max_idle=0", "max_idle"},
		{"memcached://" + addr + "?prefix=" + strings.Repeat("p", 51), "prefix"},
		{"memcached://no-such-host.invalid:11211", "servers"},
		{"memcached://:11211", "want host:port"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			b, err := backend.Open(bg(), tc.url)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer b.Close()
				if _, err := b.Incr(bg(), []string{"k"}, 1, time.Minute); err != nil {
					t.Fatalf("Incr: %v", err)
				}
				return
			}
			if !errors.Is(err, backend.ErrInvalidURL) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want ErrInvalidURL mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	// The URL's settings reach the client.
	b, err := backend.Open(bg(), "memcached://"+addr+"?timeout=70ms&max_idle=3&prefix=p:")
	if err != nil {
		t.Fatal(err)
	}
	s := b.(*Store)
	if s.c.Timeout != 70*time.Millisecond || s.c.MaxIdleConns != 3 || s.prefix != "p:" || !s.ownClient || s.servers[0] != addr || !s.oneServer {
		t.Fatalf("opened store: timeout %v, max idle %d, prefix %q, servers %v", s.c.Timeout, s.c.MaxIdleConns, s.prefix, s.servers)
	}
	b.Close()
	u, _ := url.Parse("memcached://127.0.0.1")
	b, err = Open(bg(), u)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.(*Store).servers; len(got) != 1 || got[0] != "127.0.0.1:11211" {
		t.Fatalf("default port: %v", got)
	}
	b.Close()
	b, err = backend.Open(bg(), "memcached://"+addr+","+addr)
	if err != nil {
		t.Fatal(err)
	}
	if b.(*Store).oneServer {
		t.Fatal("a store on two servers believes it has one")
	}
	b.Close()
}

// TestServerDiesMidOperation stops a server of a pool between a call's read
// and its write: every call fails with ErrUnavailable, never a panic or a
// wrong count.
func TestServerDiesMidOperation(t *testing.T) {
	ms, addrs := startPool(t, 3)
	c := memcache.New(addrs...)
	c.Timeout = 300 * time.Millisecond
	s, err := New(c, &Options{Prefix: uniquePrefix(), IndexShards: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	other := newStore(t, &Options{Prefix: s.prefix, IndexShards: 1}, addrs...)
	keys := keysPerServer(t, s, addrs)
	var sl memcache.ServerList
	_ = sl.SetServers(addrs...)
	ixAddr, _ := sl.PickServer(s.shardKey(familyBlocks, 0))
	// Name the servers: ix holds the block index shard, a and b the others.
	var ix, a, b int
	for i, addr := range addrs {
		if addr == ixAddr.String() {
			ix = i
		}
	}
	a, b = (ix+1)%3, (ix+2)%3
	kIx, kA, kB := keys[addrs[ix]], keys[addrs[a]], keys[addrs[b]]
	ctx := bg()
	stop := func(i int) func() { return func() { ms[i].Stop() } }
	tests := []struct {
		name    string
		hookKey string
		hook    func()
		call    func() error
	}{
		{"Incr: the write fails", kA, stop(a), func() error {
			_, err := s.Incr(ctx, []string{kA}, 1, time.Minute)
			return err
		}},
		{"Reserve: the write fails", kA, stop(a), func() error {
			return s.Reserve(ctx, &backend.Reservation{Blocks: []string{"blk"}, Counters: []string{kA}, TTL: time.Minute})
		}},
		{"Block: the lockout count fails", kA, stop(a), func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: kIx, LockoutsKey: kA, Durations: []time.Duration{time.Minute}})
			return err
		}},
		{"Block: the block's index fails", kA, stop(ix), func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: kB, LockoutsKey: kA, Durations: []time.Duration{time.Minute}})
			return err
		}},
		{"Block: the counter's delete fails", kA, stop(b), func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: kIx, LockoutsKey: kA, CounterKey: kB, Durations: []time.Duration{time.Minute}})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Delete(ctx, kIx, kA, kB); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{kIx, kA, kB} {
				if _, err := s.Incr(ctx, []string{k}, 1, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			var once sync.Once
			testHookBeforeWrite = func(st *Store, key string) {
				if st == s && key == tc.hookKey {
					once.Do(tc.hook)
				}
			}
			err := tc.call()
			testHookBeforeWrite = nil
			if !errors.Is(err, backend.ErrUnavailable) {
				t.Errorf("error %v, want ErrUnavailable", err)
			}
			for _, m := range ms {
				m.Start()
			}
			// Wear out connections to the restarted servers.
			for i := 0; i < 8; i++ {
				_, _ = s.Get(ctx, []string{kIx, kA, kB})
				_, _ = other.Get(ctx, []string{kIx, kA, kB})
			}
		})
	}
}

// TestConcurrentIndexWrites sets blocks from several Stores at once into
// one index shard: compare-and-swap keeps every member.
func TestConcurrentIndexWrites(t *testing.T) {
	addr := testserver.StartMemcached(t)
	prefix := uniquePrefix()
	var ss []*Store
	for i := 0; i < 4; i++ {
		ss = append(ss, newStore(t, &Options{Prefix: prefix, IndexShards: 1}, addr))
	}
	const n = 100
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = ss[i%len(ss)].SetBlock(bg(), fmt.Sprintf("b%03d", i), nil, time.Minute)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	es, next, err := ss[0].Scan(bg(), "b", "", 1000)
	if err != nil || len(es) != n || next != "" {
		t.Fatalf("Scan = %d entries, %q, %v; want %d", len(es), next, err, n)
	}
}

// TestMaxInFlight: calls beyond MaxInFlight wait for a slot until their
// context ends.
func TestMaxInFlight(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, &Options{MaxInFlight: 1}, addr)
	s.slots <- struct{}{} // the one slot is busy
	ctx, cancel := context.WithTimeout(bg(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Get(ctx, []string{"k"}); !errors.Is(err, backend.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get without a slot: %v", err)
	}
	<-s.slots
	if _, err := s.Get(bg(), []string{"k"}); err != nil {
		t.Fatal(err)
	}
}

// TestCompactIndex drives compactions directly: of an absent shard, of a
// clean one (no write), concurrently with appends from other Stores (no
// member lost), and with the server down.
func TestCompactIndex(t *testing.T) {
	m := testserver.NewMemcached(t)
	prefix := uniquePrefix()
	var logs bytes.Buffer
	w := &syncWriter{w: &logs}
	lg := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newStore(t, &Options{Prefix: prefix, IndexShards: 1, Logger: lg}, m.Addr)
	ctx := bg()
	sk := s.shardKey(familyBlocks, 0)
	if err := s.compactIndex(ctx, familyBlocks, 0, map[string]int64{"a": 0}); err != nil {
		t.Fatal(err)
	}
	it, err := s.c.Get(sk)
	if err != nil || string(it.Value) != "0 a\n" {
		t.Fatalf("shard after compacting an absent one: %v, %v", it, err)
	}
	if err := s.compactIndex(ctx, familyBlocks, 0, nil); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.c.Get(sk); again.CasID != it.CasID {
		t.Fatal("a clean shard was rewritten")
	}
	// Appends racing with compactions lose nothing.
	var ss []*Store
	for i := 0; i < 3; i++ {
		ss = append(ss, newStore(t, &Options{Prefix: prefix, IndexShards: 1}, m.Addr))
	}
	var wg sync.WaitGroup
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := ss[i%3]
			if i%4 == 0 {
				if err := st.compactIndex(ctx, familyBlocks, 0, nil); err != nil {
					t.Error(err)
				}
				return
			}
			if err := st.SetBlock(ctx, fmt.Sprintf("m%02d", i), nil, time.Minute); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	es, _, err := s.Scan(ctx, "m", "", 100)
	if err != nil || len(es) != 45 {
		t.Fatalf("Scan after racing appends and compactions = %d entries, %v; want 45", len(es), err)
	}
	m.Stop()
	if err := s.compactIndex(ctx, familyBlocks, 0, nil); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("compaction with the server down: %v", err)
	}
	s.ixq <- ixReq{compact: true, family: familyBlocks, shard: 0}
	_ = s.flush(ctx)
	if !strings.Contains(w.String(), "index compaction failed") {
		t.Fatalf("no log line for a failed background compaction: %s", w.String())
	}
}

// TestCompactionLosesRaces appends to a shard between a compaction's read
// and its write: the compaction retries and keeps the new member; endless
// interference makes it give up with ErrUnavailable.
func TestCompactionLosesRaces(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, &Options{IndexShards: 1}, addr)
	other := newStore(t, &Options{Prefix: s.prefix, IndexShards: 1}, addr)
	ctx := bg()
	if err := s.SetBlock(ctx, "a", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	sk := s.shardKey(familyBlocks, 0)
	n := 0
	testHookBeforeWrite = func(st *Store, key string) {
		if st == s && key == sk && n < 2 {
			n++
			if err := other.SetBlock(ctx, fmt.Sprint("b", n), nil, time.Minute); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { testHookBeforeWrite = nil }()
	if err := s.compactIndex(ctx, familyBlocks, 0, map[string]int64{"c": 0}); err != nil {
		t.Fatal(err)
	}
	testHookBeforeWrite = nil
	es, _, err := s.Scan(ctx, "", "", 0)
	if err != nil || len(es) != 3 { // a, b1, b2 (c was never written)
		t.Fatalf("Scan = %+v, %v; want a, b1, b2", es, err)
	}
	testHookBeforeWrite = func(st *Store, key string) {
		if st == s && key == sk {
			// A duplicate line keeps the shard dirty, so every retry
			// must write again.
			if err := other.SetBlock(ctx, "a", nil, time.Minute); err != nil {
				t.Error(err)
			}
		}
	}
	if err := s.compactIndex(ctx, familyBlocks, 0, map[string]int64{"e": 0}); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("compaction under endless interference: %v", err)
	}
}
