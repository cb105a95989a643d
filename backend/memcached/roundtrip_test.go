package memcached

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
)

// slowConn delays every write (one per Memcached command) by delay and
// counts them, so that a call's duration divided by delay is the number of
// round trips it makes one after the other.
type slowConn struct {
	net.Conn
	delay  time.Duration
	writes *atomic.Int64
}

func (c slowConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	time.Sleep(c.delay)
	return c.Conn.Write(p)
}

// TestRoundTrips measures the sequential round trips and the commands of
// each operation (the table in the package doc), on one server and on a
// pool of three.
func TestRoundTrips(t *testing.T) {
	// Long enough that a loaded machine's scheduling noise stays well
	// under one delay (at 50ms a load average of 17 once added two).
	const delay = 120 * time.Millisecond
	for _, servers := range []int{1, 3} {
		_, addrs := startPool(t, servers)
		var writes atomic.Int64
		c := memcache.New(addrs...)
		c.Timeout = 5 * time.Second
		c.MaxIdleConns = 16
		var slow atomic.Bool
		c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil || !slow.Load() {
				return nc, err
			}
			return slowConn{nc, delay, &writes}, nil
		}
		s, err := New(c, &Options{Prefix: uniquePrefix()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ctx := bg()
		slow.Store(true) // every connection from now on is slow
		// Existing, already indexed counters; a block for the blocked case.
		if _, err := s.Incr(ctx, []string{"c:ip", "c:user", "l:user", "c:x"}, 1, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.SetBlock(ctx, "b:blocked", []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.flush(ctx); err != nil {
			t.Fatal(err)
		}
		// The same store as Open makes it on one server (oneServer: see
		// TestOpenURL) skips the second block read of Reserve.
		opened, err := New(c, &Options{Prefix: s.prefix})
		if err != nil {
			t.Fatal(err)
		}
		opened.oneServer = servers == 1
		t.Cleanup(func() { opened.Close() })
		fresh := 0
		tests := []struct {
			name     string
			rt, cmds int // cmds: on one server; -1 = not checked
			call     func() error
		}{
			{"Get 2 keys", 1, 1, func() error { _, err := s.Get(ctx, []string{"c:ip", "c:user"}); return err }},
			{"Incr 1 existing key", 2, 2, func() error { _, err := s.Incr(ctx, []string{"c:ip"}, 1, time.Hour); return err }},
			{"Incr 2 existing keys", 2, 3, func() error { _, err := s.Incr(ctx, []string{"c:ip", "c:user"}, 1, time.Hour); return err }},
			{"Incr 1 new key", 2, -1, func() error {
				fresh++
				_, err := s.Incr(ctx, []string{fmt.Sprint("c:new", fresh)}, 1, time.Hour)
				return err
			}},
			{"Reserve (2 blocks, 2 counters), not blocked", 2, 4, func() error {
				return s.Reserve(ctx, &backend.Reservation{Blocks: []string{"b:ip", "b:user"}, Counters: []string{"c:ip", "c:user"}, TTL: time.Hour})
			}},
			{"Reserve on one server opened by URL", 2, 3, func() error {
				return opened.Reserve(ctx, &backend.Reservation{Blocks: []string{"b:ip", "b:user"}, Counters: []string{"c:ip", "c:user"}, TTL: time.Hour})
			}},
			{"Reserve, blocked", 1, 1, func() error {
				r := &backend.Reservation{Blocks: []string{"b:ip", "b:blocked"}, Counters: []string{"c:ip", "c:user"}, TTL: time.Hour}
				err := s.Reserve(ctx, r)
				if r.Blocked != 1 {
					t.Errorf("not blocked")
				}
				return err
			}},
			{"SetBlock", 2, 2, func() error { return s.SetBlock(ctx, "b:user", []byte("v"), time.Hour) }},
			{"Delete 2 keys", 1, 2, func() error { return s.Delete(ctx, "b:user", "c:x") }},
			{"Block", 4, 5, func() error {
				_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b:user", LockoutsKey: "l:user", CounterKey: "c:user", Window: time.Hour, Durations: []time.Duration{time.Hour}})
				return err
			}},
			{"Scan", 2, 2, func() error { _, _, err := s.Scan(ctx, "b:", "", 0); return err }},
		}
		for _, tc := range tests {
			// The best of three runs: a loaded machine can only make a
			// sleep longer.
			el, cmds := time.Duration(math.MaxInt64), 0
			for run := 0; run < 3; run++ {
				if err := s.flush(ctx); err != nil { // no background index write during the measure
					t.Fatal(err)
				}
				if err := opened.flush(ctx); err != nil {
					t.Fatal(err)
				}
				before := writes.Load()
				start := time.Now()
				if err := tc.call(); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if d := time.Since(start); d < el {
					el, cmds = d, int(writes.Load()-before)
				}
			}
			rt := int(el / delay)
			t.Logf("%d server(s): %-45s %d round trip(s), %d command(s)", servers, tc.name, rt, cmds)
			if rt != tc.rt {
				t.Errorf("%d server(s): %s took %v: %d round trips, want %d", servers, tc.name, el, rt, tc.rt)
			}
			if servers == 1 && tc.cmds >= 0 && cmds != tc.cmds {
				t.Errorf("%s: %d commands, want %d", tc.name, cmds, tc.cmds)
			}
		}
	}
}
