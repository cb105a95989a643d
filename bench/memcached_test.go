package bench

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memcached"
	"github.com/go-defender/defender/conformance"
	"github.com/go-defender/defender/internal/testserver"
)

func init() {
	register(store{name: "memcached", open: openMemcached, parallelism: netParallelism, footprint: memcachedFootprint, traffic: memcachedTraffic})
	pairedFloors["memcached"] = conformance.Floor{Setup: func(b *testing.B) func(int) error {
		c := memcacheClient(memcachedAddr(b))
		b.Cleanup(func() { c.Close() })
		if err := c.Set(&memcache.Item{Key: "bench:floor", Value: []byte("1")}); err != nil {
			b.Fatal(err)
		}
		return func(int) error { _, err := c.Get("bench:floor"); return err }
	}}
	floors = append(floors, floor{"memcached", "memcached-get", func(b *testing.B) {
		c := memcacheClient(memcachedAddr(b))
		defer c.Close()
		if err := c.Set(&memcache.Item{Key: "bench:floor", Value: []byte("1")}); err != nil {
			b.Fatal(err)
		}
		conformance.BenchFloor(b, conformance.Floor{Setup: func(*testing.B) func(int) error {
			return func(int) error { _, err := c.Get("bench:floor"); return err }
		}}, netParallelism)
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

// memcachedFootprint is the server's "bytes" and "curr_items" statistics
// (the store's index keys included).
func memcachedFootprint(b *testing.B, _ backend.Backend) (float64, float64) {
	st, err := testserver.MemcachedStats(memcachedAddr(b))
	if err != nil {
		b.Fatal(err)
	}
	bytes, _ := strconv.ParseFloat(st["bytes"], 64)
	items, _ := strconv.ParseFloat(st["curr_items"], 64)
	return bytes, items
}

// memcachedTraffic is the server's key operations, keyops/op (gets, sets,
// touches, incr/decr, cas, deletes: a multi-key get counts each key), and
// bytes read and written, net-B/op, and the server's CPU time,
// server-us/op (rusage).
func memcachedTraffic(b *testing.B) map[string]float64 {
	st, err := testserver.MemcachedStats(memcachedAddr(b))
	if err != nil {
		b.Fatal(err)
	}
	m := map[string]float64{"keyops/op": 0, "net-B/op": 0, "server-us/op": 0}
	for _, k := range []string{"rusage_user", "rusage_system"} {
		v, _ := strconv.ParseFloat(st[k], 64)
		m["server-us/op"] += v * 1e6
	}
	for _, k := range []string{"cmd_get", "cmd_set", "cmd_touch", "incr_hits", "incr_misses", "decr_hits", "decr_misses",
		"cas_hits", "cas_misses", "cas_badval", "delete_hits", "delete_misses"} {
		v, _ := strconv.ParseFloat(st[k], 64)
		m["keyops/op"] += v
	}
	for _, k := range []string{"bytes_read", "bytes_written"} {
		v, _ := strconv.ParseFloat(st[k], 64)
		m["net-B/op"] += v
	}
	return m
}
