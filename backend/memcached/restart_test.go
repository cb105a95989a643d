package memcached

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

// openPool opens a Store by URL, as an application does (max_idle=64, the
// URL's default, idle connections per server).
func openPool(t *testing.T, addrs []string) *Store {
	t.Helper()
	u, err := url.Parse("memcached://" + strings.Join(addrs, ",") + "?timeout=500ms&prefix=" + uniquePrefix())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.(*Store)
}

// clientConns returns the connections a server has open beyond those
// counted on a fresh server (listeners and the stats connection itself).
func clientConns(t *testing.T, m *testserver.Memcached, base int) int {
	t.Helper()
	n, err := strconv.Atoi(m.Stats()["curr_connections"])
	if err != nil {
		t.Fatal(err)
	}
	return n - base
}

// warm runs bursts of concurrent logins until every server holds at least
// want connections from the Store (all idle in its pool once the burst
// ends), or fails the test after 100 bursts. It then waits for the
// background indexer to write the new counters' index entries, so that
// nothing but the test's own calls meets the dead connections after a
// restart.
func warm(t *testing.T, s *Store, ms []*testserver.Memcached, base []int, want int) {
	t.Helper()
	var seq atomic.Int64
	for burst := 0; burst < 100; burst++ {
		var wg sync.WaitGroup
		for range 128 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := strconv.FormatInt(seq.Add(1), 10)
				r := backend.Reservation{Blocks: []string{"b:" + id, "bu:" + id}, Counters: []string{"f:" + id, "fu:" + id}, TTL: time.Minute}
				if err := s.Reserve(context.Background(), &r); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		low := false
		for i, m := range ms {
			if clientConns(t, m, base[i]) < want {
				low = true
			}
		}
		if !low {
			if err := s.flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("fewer than %d pooled connections per server after 100 bursts", want)
}

// recovery restarts ms[restart] and then logs in with fresh identities
// (keys on every server) until a login succeeds or a second has passed
// since the server was back. It returns the failed logins and the time from
// the restart to the first success (or -1).
func recovery(t *testing.T, s *Store, ms []*testserver.Memcached, restart int) (failed int, took time.Duration) {
	t.Helper()
	ms[restart].Restart()
	back := time.Now()
	deadline := back.Add(time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		id := "after" + strconv.Itoa(i)
		r := backend.Reservation{Blocks: []string{"b:" + id, "bu:" + id}, Counters: []string{"f:" + id, "fu:" + id, "g:" + id, "gu:" + id}, TTL: time.Minute}
		if err := s.Reserve(context.Background(), &r); err != nil {
			failed++
			continue
		}
		if r.Blocked != -1 || r.Counts[0] != 1 {
			t.Fatalf("login after the restart: %+v", r)
		}
		return failed, time.Since(back)
	}
	return failed, -1
}

// TestRestartRecovery fills the Store's pool with more than 43 idle
// connections, restarts Memcached on the same port (every pooled
// connection is then dead), and checks that logins work again at once:
// the first one, and a burst of concurrent ones right after, with no
// failure, well within a second of the server being back.
func TestRestartRecovery(t *testing.T) {
	m := testserver.NewMemcached(t)
	ms := []*testserver.Memcached{m}
	base := []int{clientConns(t, m, 0)}
	s := openPool(t, []string{m.Addr})
	warm(t, s, ms, base, 48)
	pooled := clientConns(t, m, base[0])
	failed, took := recovery(t, s, ms, 0)
	t.Logf("%d pooled connections; after the restart: %d failed logins, first success after %v", pooled, failed, took)
	if took < 0 {
		t.Fatalf("no login succeeded within a second of the restart (%d failed)", failed)
	}
	if failed != 0 {
		t.Errorf("%d logins failed after the restart, want 0", failed)
	}
	if st := s.Stats(); st.ConnDrops == 0 {
		t.Errorf("no idle connection drop counted: %+v", st)
	}
	burst(t, s)
}

// burst runs 64 concurrent logins and fails the test on any error.
func burst(t *testing.T, s *Store) {
	t.Helper()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "burst" + strconv.Itoa(i)
			r := backend.Reservation{Blocks: []string{"b:" + id}, Counters: []string{"f:" + id, "fu:" + id}, TTL: time.Minute}
			if err := s.Reserve(context.Background(), &r); err != nil {
				failed.Add(1)
				t.Log(err)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of 64 concurrent logins failed after the restart", n)
	}
}

// TestRestartRecoveryPool: the same with a pool of three servers, one of
// which restarts; logins touch keys on every server.
func TestRestartRecoveryPool(t *testing.T) {
	ms, addrs := startPool(t, 3)
	base := make([]int, len(ms))
	for i, m := range ms {
		base[i] = clientConns(t, m, 0)
	}
	s := openPool(t, addrs)
	warm(t, s, ms, base, 44)
	failed, took := recovery(t, s, ms, 1)
	t.Logf("after one server of three restarted: %d failed logins, first success after %v", failed, took)
	if took < 0 {
		t.Fatalf("no login succeeded within a second of the restart (%d failed)", failed)
	}
	if failed != 0 {
		t.Errorf("%d logins failed after the restart, want 0", failed)
	}
	burst(t, s)
}

// TestDeadConnWrites: a write that meets a dead connection fails (it is
// never resent: it may have been applied) and drops the idle connections,
// so the next call works; a read is not retried once its context has ended.
func TestDeadConnWrites(t *testing.T) {
	m := testserver.NewMemcached(t)
	s := openPool(t, []string{m.Addr})
	ctx := context.Background()
	pool := func() {
		t.Helper()
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Get(ctx, []string{"k" + strconv.Itoa(i)}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	pool()
	m.Restart()
	if err := s.Delete(ctx, "k"); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("Delete on a dead connection: %v, want ErrUnavailable", err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete after the drop: %v", err)
	}
	pool()
	m.Restart()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.get(cctx, s.key("k")); !deadConn(err) {
		t.Fatalf("get with an ended context on a dead connection: %v, want the connection's error", err)
	}
	if _, err := s.get(ctx, s.key("k")); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("get after the drop: %v", err)
	}
	if st := s.Stats(); st.ConnDrops != 2 {
		t.Fatalf("%+v, want 2 drops", st)
	}
	var got []string
	s.EachStat(func(name, help string, counter bool, v float64) {
		if help == "" || strings.HasSuffix(name, "_total") != counter {
			t.Errorf("%s: help %q, counter %v", name, help, counter)
		}
		got = append(got, name+"="+strconv.FormatFloat(v, 'f', -1, 64))
	})
	if want := "index_dropped_total=0 index_overflow_total=0 server_evictions=0 conn_drops_total=2"; strings.Join(got, " ") != want {
		t.Fatalf("EachStat: %s, want %s", strings.Join(got, " "), want)
	}
}

func TestDeadConnErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		dead bool
	}{
		{io.EOF, true},
		{io.ErrUnexpectedEOF, true},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{os.ErrDeadlineExceeded, false},
		{memcache.ErrCacheMiss, false},
		{memcache.ErrNotStored, false},
	} {
		if got := deadConn(tc.err); got != tc.dead {
			t.Errorf("deadConn(%v) = %v", tc.err, got)
		}
	}
}

// TestAbandonedCallWritesNothing: a call whose context ends before its
// counter write is sent returns ErrUnavailable at the deadline, and the
// write never happens afterwards (the abandoned work checks the context
// right before each write).
func TestAbandonedCallWritesNothing(t *testing.T) {
	addr := testserver.StartMemcached(t)
	s := newStore(t, nil, addr)
	bgc := context.Background()
	if _, err := s.Incr(bgc, []string{"k"}, 5, time.Minute); err != nil {
		t.Fatal(err)
	}
	defer func() { testHookBeforeWrite = nil }()
	calls := map[string]func(ctx context.Context) error{
		"Incr": func(ctx context.Context) error { _, err := s.Incr(ctx, []string{"k"}, 1, time.Minute); return err },
		"Reserve": func(ctx context.Context) error {
			return s.Reserve(ctx, &backend.Reservation{Blocks: []string{"b"}, Counters: []string{"k"}, TTL: time.Minute})
		},
		"Block": func(ctx context.Context) error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "k", CounterKey: "c", Durations: []time.Duration{time.Minute}})
			return err
		},
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(bgc, 20*time.Millisecond)
		testHookBeforeWrite = func(st *Store, key string) {
			if st == s && key == "k" {
				<-ctx.Done() // the caller gives up before the write is sent
			}
		}
		err := call(ctx)
		cancel()
		if !errors.Is(err, backend.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want ErrUnavailable wrapping DeadlineExceeded", name, err)
		}
		s.calls.Wait() // the abandoned work has finished
		testHookBeforeWrite = nil
		es, err := s.Get(bgc, []string{"k", "b"})
		if err != nil {
			t.Fatal(err)
		}
		if string(es[0].Value) != "5" || es[1].Found {
			t.Errorf("%s: after the abandoned call k = %q, block found %v; want 5 and none", name, es[0].Value, es[1].Found)
		}
	}
}
