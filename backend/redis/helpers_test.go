package redis

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

var prefixSeq atomic.Int64

// uniquePrefix returns a store prefix no other test uses.
func uniquePrefix() string {
	return fmt.Sprintf("t%d:", prefixSeq.Add(1))
}

// standalone starts a redis-server and returns a client for it (closed at
// the end of the test) with the options a production client should have.
func standalone(t testing.TB) (*testserver.RedisServer, *goredis.Client) {
	t.Helper()
	srv := testserver.StartRedisServer(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return srv, c
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openStore returns a store with a fresh prefix on client, closed at the end
// of the test.
func openStore(t testing.TB, client goredis.UniversalClient) *Store {
	t.Helper()
	s := New(client, &Options{Prefix: uniquePrefix()})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustIncr(t testing.TB, s backend.Backend, keys []string, delta int64, ttl time.Duration) []int64 {
	t.Helper()
	n, err := s.Incr(tctx(t), keys, delta, ttl)
	if err != nil {
		t.Fatalf("Incr(%q): %v", keys, err)
	}
	return n
}
