package memcached

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

// The benchmarks share one server per run. BenchmarkGet is the floor: one
// plain gomemcache Get round trip. BenchmarkReserve is the login check of
// the engine (two block keys, two counters: IP and username).

func benchServer(b *testing.B) (string, *memcache.Client) {
	b.Helper()
	addr := testserver.StartMemcached(b)
	c := memcache.New(addr)
	c.Timeout = 5 * time.Second
	c.MaxIdleConns = 256
	return addr, c
}

func BenchmarkGet(b *testing.B) {
	_, c := benchServer(b)
	if err := c.Set(&memcache.Item{Key: "k", Value: []byte("1")}); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Get("k"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Get("k"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

func BenchmarkReserve(b *testing.B) {
	addr, _ := benchServer(b)
	// Opened by URL, as DEFENDER_STORE_URL does: on one server, Reserve
	// makes 3 commands in 2 round trips.
	bk, err := backend.Open(bg(), "memcached://"+addr+"?prefix=bench:&timeout=5s&max_idle=256")
	if err != nil {
		b.Fatal(err)
	}
	s := bk.(*Store)
	b.Cleanup(func() { s.Close() })
	var ips atomic.Int64
	// Each goroutine reserves for its own IP and user (a flood of distinct
	// attackers would spread the same way; one hot key is measured by
	// TestConcurrentFirstIncr).
	run := func(pb interface{ Next() bool }) {
		id := strconv.FormatInt(ips.Add(1), 10)
		r := backend.Reservation{
			Blocks:   []string{"b:ip:" + id, "b:user:" + id},
			Counters: []string{"c:ip:" + id, "c:user:" + id},
			TTL:      time.Hour,
		}
		for pb.Next() {
			if err := s.Reserve(bg(), &r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		run(loopNext{b})
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) { run(pb) })
	})
}

// loopNext adapts b.Loop to the Next method of testing.PB.
type loopNext struct{ b *testing.B }

func (l loopNext) Next() bool { return l.b.Loop() }
