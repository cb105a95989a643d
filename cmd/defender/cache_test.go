package main

import (
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/internal/testserver"
)

// The block near-cache across processes: two demos ("nodes" A and B) on
// one shared store. A block set through A is refused by B; an unblock
// through A's admin lets the user in through B within the bound: at once
// on Redis (the unblock is announced), within DEFENDER_BLOCK_CACHE_TTL on
// Memcached.
func TestNearCacheTwoProcesses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url string
		bound     time.Duration
	}{
		{"redis", "redis://" + testserver.StartRedis(t) + "/0", 100 * time.Millisecond},
		{"memcached", "memcached://" + testserver.StartMemcached(t), time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := []string{"DEFENDER_DISABLE_IP_LOCKOUT=true", "DEFENDER_BLOCK_CACHE_TTL=1s",
				"DEFENDER_CACHE_PREFIX=nc" + strings.ReplaceAll(tc.name, "-", "")}
			args := []string{"--store", tc.url, "--user", "alice:wonderland", "--admin", "root:hunter2", "--audit", "none"}
			a := startDemo(t, "", env, args...)
			b := startDemo(t, "", env, args...)
			ca, cb := client(), client()
			for i := 0; i < 4; i++ {
				a.login(t, ca, "alice", "wrong")
			}
			// B learns the block from the store, then answers from its cache.
			for i := 0; i < 20; i++ {
				if r := b.login(t, cb, "alice", "wonderland"); r.code != 429 {
					t.Fatalf("B, request %d, after alice was blocked through A: %d", i, r.code)
				}
			}
			r := do(t, ca, "POST", a.URL+"/admin/defender/api/unblock", form("username", "alice"),
				"auth", "root:hunter2", "Content-Type", formCT, "Origin", a.URL)
			if r.code != 200 {
				t.Fatalf("unblock through A: %d %s", r.code, r.body)
			}
			unblocked := time.Now()
			var took time.Duration // until the first request B let through was sent
			for {
				// A locked attempt is not counted: polling never re-blocks.
				sent := time.Now()
				r := b.login(t, cb, "alice", "wonderland")
				if r.code == 303 {
					took = sent.Sub(unblocked)
					break
				}
				if r.code != 429 {
					t.Fatalf("B: %d", r.code)
				}
				if time.Since(unblocked) > 10*time.Second {
					t.Fatalf("B still refuses alice 10s after the unblock")
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("%s: B let alice in %v after the unblock through A (bound %v)", tc.name, took, tc.bound)
			if took > tc.bound+200*time.Millisecond {
				t.Errorf("took %v, bound %v", took, tc.bound)
			}
		})
	}
}
