package stacktest

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	defenderredis "github.com/go-defender/defender/backend/redis"
	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/internal/testserver"
)

// BenchmarkRedis measures, against one redis-server on loopback in the same
// run: a go-redis PING (the round-trip floor), the store's Reserve (the
// login check: one EVALSHA), and whole login attempts through the engine
// (check+reserve, then settle), serial and parallel. docs/benchmarks.md's
// target: a whole attempt <= 2.5x PING.
func BenchmarkRedis(b *testing.B) {
	addr := testserver.StartRedis(b)
	c := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer c.Close()
	st := defenderredis.New(c, &defenderredis.Options{Prefix: "bench:"})
	defer st.Close()
	ctx := context.Background()
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1 << 30
	cfg.StoreAccessAttempts = false
	d, err := defender.New(st, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	var seq atomic.Int64
	login := func() defender.Login {
		n := seq.Add(1)
		return defender.Login{IP: netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}), Username: fmt.Sprintf("user%d", n%64)}
	}

	run := func(name string, op func(l defender.Login, r *backend.Reservation) error) {
		b.Run(name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			l := login()
			r := reservation(l)
			for b.Loop() {
				if err := op(l, r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				l := login()
				r := reservation(l)
				for pb.Next() {
					if err := op(l, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	run("ping", func(defender.Login, *backend.Reservation) error { return c.Ping(ctx).Err() })
	run("reserve", func(_ defender.Login, r *backend.Reservation) error { return st.Reserve(ctx, r) })
	run("attempt-failure", func(l defender.Login, _ *backend.Reservation) error {
		return d.Attempt(ctx, l).Failed(ctx).Err
	})
	run("attempt-success", func(l defender.Login, _ *backend.Reservation) error {
		return d.Attempt(ctx, l).Succeeded(ctx).Err
	})
	run("check", func(l defender.Login, _ *backend.Reservation) error {
		return d.Check(ctx, l).Err
	})
}

// reservation is the engine's login check for l: the IP's and the
// username's block and counter (hash-tagged keys).
func reservation(l defender.Login) *backend.Reservation {
	ip := "{i:" + l.IP.String() + "}"
	u := "{u:" + l.Username + "}"
	return &backend.Reservation{
		Blocks:   []string{"defender:b:" + ip, "defender:b:" + u},
		Counters: []string{"defender:f:" + ip, "defender:f:" + u},
		TTL:      time.Hour,
	}
}
