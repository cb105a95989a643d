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

// BenchmarkStore measures, against one redis-server on loopback in the same
// run: a go-redis PING (the round-trip floor) and the store operations of a
// login: Reserve (the check, one EVALSHA), a failed attempt below the limit
// (Reserve only), a successful one (Reserve, then the refund Incr -1: two
// round trips) and Block. Serial and parallel. The engine-level numbers are
// in the stacktest package.
func BenchmarkStore(b *testing.B) {
	addr := testserver.StartRedis(b)
	c := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer c.Close()
	s := New(c, &Options{Prefix: "bench:"})
	defer s.Close()
	ctx := context.Background()
	var seq atomic.Int64
	newRes := func() *backend.Reservation {
		n := seq.Add(1)
		ip, u := fmt.Sprintf("{i:10.0.0.%d}", n), fmt.Sprintf("{u:user%d}", n)
		return &backend.Reservation{
			Blocks:   []string{"defender:b:" + ip, "defender:b:" + u},
			Counters: []string{"defender:f:" + ip, "defender:f:" + u},
			TTL:      time.Hour,
		}
	}
	ops := []struct {
		name string
		op   func(r *backend.Reservation) error
	}{
		{"ping", func(*backend.Reservation) error { return c.Ping(ctx).Err() }},
		{"reserve", func(r *backend.Reservation) error { return s.Reserve(ctx, r) }},
		{"attempt-success", func(r *backend.Reservation) error {
			if err := s.Reserve(ctx, r); err != nil {
				return err
			}
			_, err := s.Incr(ctx, r.Counters, -1, r.TTL)
			return err
		}},
		{"block", func(r *backend.Reservation) error {
			_, err := s.Block(ctx, backend.BlockRequest{
				BlockKey: r.Blocks[0], Value: []byte(`{"c":6}`), CounterKey: r.Counters[0],
				LockoutsKey: r.Counters[0] + ":n", Window: time.Hour, Durations: []time.Duration{time.Minute},
			})
			return err
		}},
	}
	for _, o := range ops {
		b.Run(o.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			r := newRes()
			for b.Loop() {
				if err := o.op(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(o.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := newRes()
				for pb.Next() {
					if err := o.op(r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
