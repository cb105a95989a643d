package peers

import (
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend/memory"
	dredis "github.com/go-defender/defender/backend/redis"
	"github.com/go-defender/defender/internal/testserver"
)

// paired alternates batches of defender's 2-key attempt and of each peer's
// 1-key check in one loop, so that both see the same machine load, and
// reports their latencies (defender-ns, peer-ns) and the ratio (x-peer).
func paired(b *testing.B, batch int, ours peer, peers []peer) {
	for _, p := range peers {
		b.Run(p.name, func(b *testing.B) {
			po, pp := ours.make(), p.make()
			var tOurs, tPeer time.Duration
			n, i := 0, 0
			for b.Loop() {
				t0 := time.Now()
				for k := 0; k < batch; k++ {
					if err := pp(i + k); err != nil {
						b.Fatal(err)
					}
				}
				t1 := time.Now()
				for k := 0; k < batch; k++ {
					if err := po(i + k); err != nil {
						b.Fatal(err)
					}
				}
				t2 := time.Now()
				tPeer += t1.Sub(t0)
				tOurs += t2.Sub(t1)
				i += batch
				n += batch
			}
			b.ReportMetric(float64(tOurs)/float64(n), "defender-ns")
			b.ReportMetric(float64(tPeer)/float64(n), "peer-ns")
			b.ReportMetric(float64(tOurs)/float64(tPeer), "x-peer")
		})
	}
}

// BenchmarkPaired compares defender's whole attempt (2 keys) with each
// peer's check (1 key), interleaved: BenchmarkPaired/<store>/<library>. On
// Redis the attempt is the mixed one (every other login a success, whose
// reset is made in the background); in memory a failure.
func BenchmarkPaired(b *testing.B) {
	b.Run("redis", func(b *testing.B) {
		c := goredis.NewClient(&goredis.Options{Addr: testserver.StartRedis(b), ContextTimeoutEnabled: true, PoolSize: 64})
		defer c.Close()
		st := dredis.New(c, &dredis.Options{Prefix: "defender:"})
		defer st.Close()
		paired(b, 1, defenderPeers(newDefender(b, st))[1], redisPeers(b, c))
	})
	b.Run("memory", func(b *testing.B) {
		st, err := memory.New(&memory.Options{MaxKeys: 8 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		paired(b, 64, defenderPeers(newDefender(b, st))[0], memoryPeers(b))
	})
}
