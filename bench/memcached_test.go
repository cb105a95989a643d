package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memcached"
)

func init() {
	register(store{name: "memcached", open: openMemcached, parallelism: netParallelism})
	floors = append(floors, floor{"memcached", "memcached-get", func(b *testing.B) {
		c := memcacheClient(memcachedAddr(b))
		defer c.Close()
		if err := c.Set(&memcache.Item{Key: "bench:floor", Value: []byte("1")}); err != nil {
			b.Fatal(err)
		}
		roundTrip(b, netParallelism, func() error { _, err := c.Get("bench:floor"); return err })
	}})
}

func memcacheClient(addr string) *memcache.Client {
	c := memcache.New(addr)
	c.MaxIdleConns = 256
	c.Timeout = 2 * time.Second
	return c
}

func openMemcached(b *testing.B) backend.Backend {
	c := memcacheClient(memcachedAddr(b))
	s, err := memcached.New(c, &memcached.Options{Prefix: fmt.Sprintf("bench%d:", seq.Add(1)), EvictionCheck: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(); c.Close() })
	return s
}
