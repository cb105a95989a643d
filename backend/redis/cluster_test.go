package redis

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

func TestHashTagAndSlot(t *testing.T) {
	srv, c := standalone(t)
	_ = srv
	rc := testserver.StartRedisCluster(t, 3, 0)
	node := goredis.NewClient(&goredis.Options{Addr: rc.Nodes[0].Addr})
	defer node.Close()
	_ = c
	for _, tc := range []struct{ key, tag string }{
		{"defender:{ip:1.2.3.4}:f", "ip:1.2.3.4"},
		{"{user:bob}", "user:bob"},
		{"plain", "plain"},
		{"a{}b{c}", "a{}b{c}"},
		{"a{b", "a{b"},
		{"a}b{c}", "c"},
		{"{a}{b}", "a"},
		{"p{x:{ip:1}:f", "x:{ip:1"},
		{"", ""},
	} {
		if got := HashTag(tc.key); got != tc.tag {
			t.Errorf("HashTag(%q) = %q, want %q", tc.key, got, tc.tag)
		}
		if tc.key == "" {
			continue
		}
		want, err := node.ClusterKeySlot(context.Background(), tc.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot(tc.key); int64(got) != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", tc.key, got, want)
		}
	}
	for i := 0; i < 2000; i++ {
		k := fmt.Sprintf("defender:{user:u%d}:f", i)
		want := node.ClusterKeySlot(context.Background(), k).Val()
		if got := Slot(k); int64(got) != want {
			t.Fatalf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
}

// crossSlot returns two hash tags whose keys are on different masters.
func crossSlot(t *testing.T, rc *testserver.RedisCluster, prefix string) (string, string) {
	t.Helper()
	ctx := context.Background()
	first, err := rc.MasterOf(ctx, prefix+"{ip:1}")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		tag := fmt.Sprintf("{user:%d}", i)
		m, err := rc.MasterOf(ctx, prefix+tag)
		if err != nil {
			t.Fatal(err)
		}
		if m != first {
			return "{ip:1}", tag
		}
	}
	t.Fatal("no tag on another master")
	return "", ""
}

func TestClusterCrossSlot(t *testing.T) {
	rc := testserver.StartRedisCluster(t, 3, 0)
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: rc.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = cc.Close() })
	rt := &roundTrips{}
	cc.AddHook(rt)
	s := New(cc, &Options{Prefix: "x:"})
	a, b := crossSlot(t, rc, "x:")
	ctx := tctx(t)
	get := func(k string) string {
		v, _ := cc.Get(ctx, "x:"+k).Result()
		return v
	}

	t.Run("ReserveRefund", func(t *testing.T) {
		r := backend.Reservation{
			Blocks:   []string{a + ":b", b + ":b"},
			Counters: []string{a + ":f", b + ":f"},
			TTL:      time.Minute,
		}
		if err := s.Reserve(ctx, &r); err != nil || r.Blocked != -1 || fmt.Sprint(r.Counts) != "[1 1]" {
			t.Fatalf("Reserve = %v %d %v", err, r.Blocked, r.Counts)
		}
		// The login check of two identities on two masters: one pipeline,
		// one EVALSHA per master.
		before := clusterEvalsha(t, rc)
		rt.n.Store(0)
		if err := s.Reserve(ctx, &r); err != nil || fmt.Sprint(r.Counts) != "[2 2]" {
			t.Fatalf("Reserve = %v %v", err, r.Counts)
		}
		if n := rt.n.Load(); n != 1 {
			t.Errorf("cross-slot Reserve took %d round trips, want 1", n)
		}
		if n := clusterEvalsha(t, rc) - before; n != 2 {
			t.Errorf("cross-slot Reserve ran %d EVALSHA, want 2 (one per slot)", n)
		}
		if _, err := s.Incr(ctx, r.Counters, -1, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.SetBlock(ctx, b+":b", []byte("blocked"), time.Minute); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			// The second time, the refund script is loaded.
			rt.n.Store(0)
			if err := s.Reserve(ctx, &r); err != nil || r.Blocked != 1 || string(r.Block.Value) != "blocked" || len(r.Counts) != 0 {
				t.Fatalf("Reserve on a block = %v %d %+v %v", err, r.Blocked, r.Block, r.Counts)
			}
		}
		trips := rt.n.Load()
		if get(a+":f") != "1" || get(b+":f") != "1" {
			t.Errorf("after a blocked Reserve: counters %q %q, want 1 1 (refunded)", get(a+":f"), get(b+":f"))
		}
		if trips != 2 {
			t.Errorf("blocked cross-slot Reserve took %d round trips, want 2 (reserve, refund)", trips)
		}
		// A counter created and refunded goes away.
		r.Counters[0] = a + ":fresh"
		if err := s.Reserve(ctx, &r); err != nil || r.Blocked != 1 {
			t.Fatal(err)
		}
		if n := cc.Exists(ctx, "x:"+a+":fresh").Val(); n != 0 {
			t.Errorf("refunded fresh counter exists")
		}
		// Both blocked: the lower index wins.
		if err := s.SetBlock(ctx, a+":b", []byte("a"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, &r); err != nil || r.Blocked != 0 || r.Block.Key != a+":b" {
			t.Fatalf("Reserve with two blocks = %v %d %+v", err, r.Blocked, r.Block)
		}
		rt.n.Store(0)
		if err := s.Delete(ctx, a+":b", b+":b", a+":f", b+":f"); err != nil {
			t.Fatal(err)
		}
		if n := rt.n.Load(); n != 1 {
			t.Errorf("cross-slot Delete took %d round trips, want 1 (a pipeline)", n)
		}
	})

	t.Run("ReserveSteps", func(t *testing.T) {
		// Blocks[0] and Counters[0] in different slots: increment, read,
		// refund (the ordering rule of backend.Reserve).
		r := backend.Reservation{Blocks: []string{a + ":sb"}, Counters: []string{b + ":sf"}, TTL: time.Minute}
		if err := s.Reserve(ctx, &r); err != nil || r.Blocked != -1 || fmt.Sprint(r.Counts) != "[1]" {
			t.Fatalf("Reserve = %v %d %v", err, r.Blocked, r.Counts)
		}
		if err := s.SetBlock(ctx, a+":sb", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, &r); err != nil || r.Blocked != 0 || r.Block.TTL != 0 || len(r.Counts) != 0 {
			t.Fatalf("Reserve on a block = %v %d %+v %v", err, r.Blocked, r.Block, r.Counts)
		}
		if get(b+":sf") != "1" {
			t.Errorf("counter %q after a blocked Reserve, want 1", get(b+":sf"))
		}
		// Blocks only, and counters only.
		if err := s.Reserve(ctx, &backend.Reservation{Blocks: []string{a + ":sb", b + ":none"}}); err != nil {
			t.Fatal(err)
		}
		r2 := backend.Reservation{Counters: []string{a + ":c", b + ":c"}}
		if err := s.Reserve(ctx, &r2); err != nil || fmt.Sprint(r2.Counts) != "[1 1]" {
			t.Fatalf("counters-only Reserve = %v %v", err, r2.Counts)
		}
		if err := s.Reserve(ctx, &backend.Reservation{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("BlockSteps", func(t *testing.T) {
		req := backend.BlockRequest{
			BlockKey: a + ":blk", Value: []byte("v"), CounterKey: b + ":cnt", LockoutsKey: b + ":n",
			Window: time.Hour, Durations: []time.Duration{time.Minute, 0},
		}
		if err := s.SetBlock(ctx, req.CounterKey, []byte("3"), 0); err != nil {
			t.Fatal(err)
		}
		for i, want := range []backend.BlockResult{{Lockouts: 1, Duration: time.Minute}, {Lockouts: 2, Duration: 0}, {Lockouts: 3, Duration: 0}} {
			res, err := s.Block(ctx, req)
			if err != nil || res != want {
				t.Fatalf("Block %d = %+v, %v; want %+v", i, res, err, want)
			}
		}
		if get(req.CounterKey) != "" || get(req.BlockKey) != "v" {
			t.Errorf("after Block: counter %q block %q", get(req.CounterKey), get(req.BlockKey))
		}
		if d := cc.PTTL(ctx, "x:"+req.BlockKey).Val(); d != -1 {
			t.Errorf("permanent block PTTL %v", d)
		}
		// Without a counter key.
		req.CounterKey = ""
		if _, err := s.Block(ctx, req); err != nil {
			t.Fatal(err)
		}
		closed := New(cc, nil)
		closed.Close()
		if _, err := closed.blockSteps(ctx, req); !errors.Is(err, backend.ErrClosed) {
			t.Errorf("blockSteps after Close: %v", err)
		}
	})

	t.Run("ScanAcrossMasters", func(t *testing.T) {
		s2 := openStore(t, cc)
		want := map[string]bool{}
		for i := 0; i < 60; i++ {
			k := fmt.Sprintf("{user:%d}:f", i)
			want[k] = true
			mustIncr(t, s2, []string{k}, 1, time.Minute)
		}
		// Every key at least once (a rehash during the scan may repeat one).
		got := map[string]bool{}
		cur := ""
		pages, dups := 0, 0
		for {
			es, next, err := s2.Scan(ctx, "{user:", cur, 7)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, e := range es {
				if got[e.Key] {
					dups++
				}
				got[e.Key] = true
			}
			if next == "" {
				break
			}
			cur = next
		}
		if len(got) != len(want) {
			t.Errorf("scan saw %d keys, want %d", len(got), len(want))
		}
		// A cursor naming a shard that no longer exists continues with the
		// next one.
		gone := cursor{shard: "1", scan: 77, count: 5, last: "zzz"}.encode()
		if _, _, err := s2.Scan(ctx, "{user:", gone, 100); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d keys on 3 masters in %d pages, %d repeated", len(got), pages, dups)
	})
}

func TestClusterUnavailable(t *testing.T) {
	rc := testserver.StartRedisCluster(t, 3, 0)
	s, err := Open(context.Background(), "redis+cluster://"+rc.Nodes[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Incr(tctx(t), []string{"{a}"}, 1, 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range rc.Nodes {
		n.Kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := s.Scan(ctx, "", "", 10); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Scan on a dead cluster: %v", err)
	}
	if err := s.Reserve(ctx, &backend.Reservation{Blocks: []string{"{a}b", "{b}b"}, Counters: []string{"{a}c", "{b}c"}}); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Reserve on a dead cluster: %v", err)
	}
}

// TestClusterScriptErrors: a script error in one slot of a pipelined call
// is returned (not ErrUnavailable); the ordered fallbacks report errors.
func TestClusterScriptErrors(t *testing.T) {
	rc := testserver.StartRedisCluster(t, 3, 0)
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: rc.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = cc.Close() })
	s := New(cc, &Options{Prefix: "e:"})
	a, b := crossSlot(t, rc, "e:")
	ctx := tctx(t)
	if err := cc.HSet(ctx, "e:"+b+":h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, []string{a + ":c", b + ":h"}, 1, 0); err == nil || errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("cross-slot Incr on a hash: %v", err)
	}
	// The ordered Reserve fallback: Incr fails, then Get fails.
	if err := s.Reserve(ctx, &backend.Reservation{Blocks: []string{a + ":b"}, Counters: []string{b + ":h"}}); err == nil {
		t.Error("Reserve fallback with a hash counter: no error")
	}
	if err := s.Reserve(ctx, &backend.Reservation{Blocks: []string{b + ":h"}, Counters: []string{a + ":c2"}}); err == nil {
		t.Error("Reserve fallback with a hash block: no error")
	}
	if v := cc.Get(ctx, "e:"+a+":c2").Val(); v != "1" {
		t.Logf("counter after a failed read: %q (the attempt stays counted)", v)
	}
}

// clusterEvalsha sums EVALSHA calls over the live nodes.
func clusterEvalsha(t *testing.T, rc *testserver.RedisCluster) int {
	t.Helper()
	n := 0
	for _, node := range rc.Nodes {
		n += commandStats(t, node.Client())["evalsha"]
	}
	return n
}
