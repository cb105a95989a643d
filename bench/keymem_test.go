package bench

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// footprint measures a store: bytes in use and keys held. Only differences
// between two calls are reported.
type footprint func(b *testing.B, st backend.Backend) (bytes, keys float64)

// heapFootprint is the Go heap in use after a collection (in-process
// stores); keys come from keysOf.
func heapFootprint(keysOf func(backend.Backend) int) footprint {
	return func(b *testing.B, st backend.Backend) (float64, float64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc), float64(keysOf(st))
	}
}

// attacker returns the login of attacker n: its own IPv4 address and
// username.
func attacker(n uint32) defender.Login {
	return defender.Login{
		IP:       netip.AddrFrom4([4]byte{byte(11 + n>>24), byte(n >> 16), byte(n >> 8), byte(n)}),
		Username: fmt.Sprintf("victim%d", n),
	}
}

// BenchmarkKeyMemory reports what a tracked key costs in each store
// (metric B/key) when every attempt comes from a new attacker (IP and
// username both new):
//
//   - counting: limit never reached, 2 counters per attacker;
//   - blocked: limit 1, two failures per attacker, which leave a block and
//     a lockout count per identity (4 keys per attacker).
//
// BenchmarkKeyMemory/memory-bound inserts 10^6 attackers into a memory
// store bounded at 100,000 keys and reports the heap and the keys held.
func BenchmarkKeyMemory(b *testing.B) {
	for _, s := range stores() {
		if s.footprint == nil {
			continue
		}
		for _, blocked := range []bool{false, true} {
			name := s.name + "/counting"
			if blocked {
				name = s.name + "/blocked"
			}
			b.Run(name, func(b *testing.B) {
				st := s.open(b)
				cfg := defender.DefaultConfig()
				cfg.FailureLimit = 1 << 30
				if blocked {
					cfg.FailureLimit = 1
				}
				cfg.StoreAccessAttempts = false
				d, err := defender.New(st, cfg, quiet)
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				base := uint32(seq.Add(1)) << 22
				bytes0, keys0 := s.footprint(b, st)
				n := uint32(0)
				for b.Loop() {
					l := attacker(base + n)
					n++
					d.Attempt(ctx, l).Failed(ctx)
					if blocked {
						d.Attempt(ctx, l).Failed(ctx)
					}
				}
				bytes1, keys1 := s.footprint(b, st)
				if keys1 > keys0 {
					b.ReportMetric((bytes1-bytes0)/(keys1-keys0), "B/key")
					b.ReportMetric((keys1-keys0)/float64(n), "keys/attacker")
				}
			})
		}
	}
	b.Run("memory-bound", func(b *testing.B) {
		const bound, attackers = 100_000, 1_000_000
		st, err := memory.New(&memory.Options{MaxKeys: bound})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		cfg := defender.DefaultConfig()
		cfg.StoreAccessAttempts = false
		d, err := defender.New(st, cfg, quiet)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		fp := heapFootprint(memKeys)
		heap0, _ := fp(b, st)
		n := uint32(0)
		for b.Loop() {
			d.Attempt(ctx, attacker(n)).Failed(ctx)
			n++
		}
		for ; n < attackers; n++ {
			d.Attempt(ctx, attacker(n)).Failed(ctx)
		}
		heap1, keys := fp(b, st)
		if keys > bound {
			b.Errorf("memory store holds %v keys, bound %d", keys, bound)
		}
		b.ReportMetric(keys, "keys-held")
		b.ReportMetric((heap1-heap0)/1e6, "heap-MB")
		b.ReportMetric(float64(st.Stats().Evictions), "evictions")
	})
}

func memKeys(st backend.Backend) int { return st.(*memory.Store).Stats().Keys }
