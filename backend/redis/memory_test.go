package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestMemoryPerKey measures what one attacking identity costs in Redis: a
// failure counter with its TTL, and a block, with the engine's key layout.
// docs/benchmarks.md asks for the number; doc.go quotes it.
func TestMemoryPerKey(t *testing.T) {
	srv, c := standalone(t)
	admin := srv.Client()
	s := New(c, nil)
	ctx := tctx(t)
	const n = 20000
	used := func() int64 {
		txt := admin.Info(ctx, "memory").Val()
		for _, line := range strings.Split(txt, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				x, _ := strconv.ParseInt(v, 10, 64)
				return x
			}
		}
		t.Fatal("no used_memory")
		return 0
	}
	batch := func(kind string, write func(keys []string) error) float64 {
		before := used()
		keys := make([]string, 0, 100)
		for i := 0; i < n; i++ {
			keys = append(keys, fmt.Sprintf("defender:%s:{i:10.%d.%d.%d}", kind, i>>16, (i>>8)&255, i&255))
			if len(keys) == cap(keys) {
				if err := write(keys); err != nil {
					t.Fatal(err)
				}
				keys = keys[:0]
			}
		}
		return float64(used()-before) / n
	}
	counter := batch("f", func(keys []string) error {
		_, err := s.Incr(ctx, keys, 1, time.Hour)
		return err
	})
	value := []byte(`{"c":4,"i":"10.0.0.1"}`)
	block := batch("b", func(keys []string) error {
		p := c.Pipeline()
		for _, k := range keys {
			p.Set(ctx, k, value, time.Hour)
		}
		_, err := p.Exec(ctx)
		return err
	})
	one := func(k string) int64 {
		v, err := c.MemoryUsage(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Logf("per identity on redis-server %s: counter with TTL %.0f B (MEMORY USAGE %d B), block with TTL %.0f B (MEMORY USAGE %d B), over %d keys each",
		version(ctx, c), counter, one("defender:f:{i:10.0.0.1}"), block, one("defender:b:{i:10.0.0.1}"), n)
	if counter <= 0 || counter > 200 || block <= 0 || block > 250 {
		t.Errorf("memory per key out of the expected range: counter %.0f B, block %.0f B", counter, block)
	}
}

func version(ctx context.Context, c *goredis.Client) string {
	txt := c.Info(ctx, "server").Val()
	for _, line := range strings.Split(txt, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}
