package peers

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"
	"github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	goredisstore "github.com/throttled/throttled/v2/store/goredisstore.v9"
	"github.com/throttled/throttled/v2/store/memstore"
	"github.com/ulule/limiter/v3"
	ulmemory "github.com/ulule/limiter/v3/drivers/store/memory"
	ulredis "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
	dredis "github.com/go-defender/defender/backend/redis"
	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/internal/testserver"
)

var ctx = context.Background()

// keys is the number of distinct identities each goroutine rotates over.
const keys = 4096

// netParallelism is the SetParallelism of the Redis benchmarks, as in
// bench/ (8 goroutines per GOMAXPROCS).
const netParallelism = 8

// huge is a limit no benchmark reaches: every check is allowed.
const huge = 1 << 30

var seq atomic.Int64

// check is one peer's check on key i of a goroutine's key set.
type check func(i int) error

// peer builds a check for one goroutine (its own key set).
type peer struct {
	name string
	make func() check
}

func keySet(prefix string) []string {
	base := int(seq.Add(1)) * keys
	ks := make([]string, keys)
	for i := range ks {
		ks[i] = fmt.Sprintf("%s%d", prefix, base+i)
	}
	return ks
}

func run(b *testing.B, parallelism int, peers []peer) {
	for _, p := range peers {
		b.Run(p.name+"/serial", func(b *testing.B) {
			c := p.make()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := c(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(p.name+"/parallel", func(b *testing.B) {
			if parallelism > 0 {
				b.SetParallelism(parallelism)
			}
			// Build every goroutine's check (and its key set) before the
			// clock starts.
			checks := make(chan check, max(parallelism, 1)*runtime.GOMAXPROCS(0))
			for range cap(checks) {
				checks <- p.make()
			}
			b.ResetTimer()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c := <-checks
				i := 0
				for pb.Next() {
					if err := c(i); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// newDefender is a Defender on st with a limit never reached and no audit
// log, as in bench/.
func newDefender(b testing.TB, st backend.Backend) *defender.Defender {
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = huge
	cfg.StoreAccessAttempts = false
	cfg.StoreTimeout = 5 * time.Second
	d, err := defender.New(st, cfg, &defender.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// defenderPeers are defender's whole attempt (2 keys) and check.
func defenderPeers(d *defender.Defender) []peer {
	logins := func() []defender.Login {
		base := uint32(seq.Add(1)) * keys
		ls := make([]defender.Login, keys)
		for i := range ls {
			n := base + uint32(i)
			ls[i] = defender.Login{IP: netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), Username: fmt.Sprintf("user%d", n)}
		}
		return ls
	}
	return []peer{
		{"defender-attempt", func() check {
			ls := logins()
			return func(i int) error {
				a := d.Attempt(ctx, ls[i%keys])
				if dec := a.Decision(); !dec.Allowed() {
					return fmt.Errorf("defender attempt refused: %+v", dec)
				}
				a.Failed(ctx)
				return nil
			}
		}},
		{"defender-mixed", func() check {
			ls := logins()
			return func(i int) error {
				a := d.Attempt(ctx, ls[i%keys])
				if dec := a.Decision(); !dec.Allowed() {
					return fmt.Errorf("defender attempt refused: %+v", dec)
				}
				if i%2 == 0 {
					a.Succeeded(ctx)
				} else {
					a.Failed(ctx)
				}
				return nil
			}
		}},
		{"defender-check", func() check {
			ls := logins()
			return func(i int) error {
				if dec := d.Check(ctx, ls[i%keys]); !dec.Allowed() {
					return fmt.Errorf("defender check refused: %+v", dec)
				}
				return nil
			}
		}},
	}
}

// redisPeers are the peers on one Redis server, through client c.
func redisPeers(b testing.TB, c *goredis.Client) []peer {
	rr := redis_rate.NewLimiter(c)
	ulStore, err := ulredis.NewStoreWithOptions(c, limiter.StoreOptions{Prefix: "ulule"})
	if err != nil {
		b.Fatal(err)
	}
	ul := limiter.New(ulStore, limiter.Rate{Period: 5 * time.Minute, Limit: huge})
	thStore, err := goredisstore.NewCtx(c, "throttled:")
	if err != nil {
		b.Fatal(err)
	}
	th, err := throttled.NewGCRARateLimiterCtx(thStore, throttled.RateQuota{MaxRate: throttled.PerMin(1000), MaxBurst: huge})
	if err != nil {
		b.Fatal(err)
	}
	return []peer{
		{"redis_rate", func() check {
			ks := keySet("rr:")
			limit := redis_rate.Limit{Rate: huge, Burst: huge, Period: 5 * time.Minute}
			return func(i int) error {
				res, err := rr.Allow(ctx, ks[i%keys], limit)
				if err == nil && res.Allowed != 1 {
					err = fmt.Errorf("redis_rate refused: %+v", res)
				}
				return err
			}
		}},
		{"ulule", ululeCheck(ul)},
		{"throttled", throttledCheck(th)},
		{"ping", func() check {
			return func(int) error { return c.Ping(ctx).Err() }
		}},
	}
}

func ululeCheck(ul *limiter.Limiter) func() check {
	return func() check {
		ks := keySet("u")
		return func(i int) error {
			res, err := ul.Get(ctx, ks[i%keys])
			if err == nil && res.Reached {
				err = fmt.Errorf("ulule refused: %+v", res)
			}
			return err
		}
	}
}

func throttledCheck(th *throttled.GCRARateLimiterCtx) func() check {
	return func() check {
		ks := keySet("t")
		return func(i int) error {
			limited, _, err := th.RateLimitCtx(ctx, ks[i%keys], 1)
			if err == nil && limited {
				err = fmt.Errorf("throttled refused %s", ks[i%keys])
			}
			return err
		}
	}
}

// memoryPeers are the peers' in-process stores.
func memoryPeers(b testing.TB) []peer {
	ul := limiter.New(ulmemory.NewStore(), limiter.Rate{Period: 5 * time.Minute, Limit: huge})
	sv, err := memorystore.New(&memorystore.Config{Tokens: huge, Interval: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sv.Close(ctx) })
	thStore, err := memstore.NewCtx(0)
	if err != nil {
		b.Fatal(err)
	}
	th, err := throttled.NewGCRARateLimiterCtx(thStore, throttled.RateQuota{MaxRate: throttled.PerMin(1000), MaxBurst: huge})
	if err != nil {
		b.Fatal(err)
	}
	return []peer{
		{"ulule", ululeCheck(ul)},
		{"sethvargo", func() check {
			ks := keySet("s")
			return func(i int) error {
				_, _, _, ok, err := sv.Take(ctx, ks[i%keys])
				if err == nil && !ok {
					err = fmt.Errorf("sethvargo refused %s", ks[i%keys])
				}
				return err
			}
		}},
		{"throttled", throttledCheck(th)},
	}
}

// BenchmarkPeers runs defender and the peers on one Redis server and in
// process: BenchmarkPeers/<redis|memory>/<library>/<serial|parallel>.
func BenchmarkPeers(b *testing.B) {
	b.Run("redis", func(b *testing.B) {
		addr := testserver.StartRedis(b)
		c := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, PoolSize: 64})
		defer c.Close()
		st := dredis.New(c, &dredis.Options{Prefix: "defender:"})
		defer st.Close()
		run(b, netParallelism, append(defenderPeers(newDefender(b, st)), redisPeers(b, c)...))
	})
	b.Run("memory", func(b *testing.B) {
		st, err := memory.New(&memory.Options{MaxKeys: 8 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		run(b, 0, append(defenderPeers(newDefender(b, st)), memoryPeers(b)...))
	})
}
