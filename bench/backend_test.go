package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/defender"
)

var ctx = context.Background()

// netParallelism is the b.SetParallelism of the benchmarks that wait on a
// network round trip (and of their floors): GOMAXPROCS*netParallelism
// goroutines keep the server busy while others wait.
const netParallelism = 8

// logins is the number of distinct identities the benchmarks rotate over.
const logins = 4096

// a store under benchmark.
type store struct {
	name string
	// open returns a fresh backend, closed when b ends.
	open func(b *testing.B) backend.Backend
	// parallelism for RunParallel (0: the default, GOMAXPROCS goroutines).
	parallelism int
	// footprint, when set, measures the store for BenchmarkKeyMemory.
	footprint footprint
	// traffic, when set, returns the server's counters so far (metric
	// unit -> total), reported per operation by perOp.
	traffic func(b *testing.B) map[string]float64
}

// registered holds every backend, from the init functions of the files
// that know them (one per backend); stores returns them in report order.
var registered []store

func register(s store) { registered = append(registered, s) }

// order is the order of the report; unknown names go last.
var order = []string{"memory", "bolt", "redis", "redis-cluster", "memcached"}

func stores() []store {
	out := make([]store, 0, len(registered))
	for _, n := range order {
		for _, s := range registered {
			if s.name == n {
				out = append(out, s)
			}
		}
	}
	return out
}

var seq atomic.Int64

// quiet discards the engine's log lines (one per block).
var quiet = &defender.Options{Logger: slog.New(slog.DiscardHandler)}

// newDefender returns a Defender on st whose limit is never reached, without
// an audit log: the benchmarks measure the store path.
func newDefender(b *testing.B, st backend.Backend) *defender.Defender {
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1 << 30
	cfg.StoreAccessAttempts = false
	cfg.StoreTimeout = 5 * time.Second
	d, err := defender.New(st, cfg, quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// loginSet returns logins distinct identities (IP and username), starting
// at a different offset for every call so that parallel goroutines work on
// different keys.
func loginSet() []defender.Login {
	base := uint32(seq.Add(1)) * logins
	ls := make([]defender.Login, logins)
	for i := range ls {
		n := base + uint32(i)
		ls[i] = defender.Login{
			IP:       netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}),
			Username: fmt.Sprintf("user%d", n),
		}
	}
	return ls
}

// poolSets is the number of login sets built ahead for RunParallel's
// goroutines (more than GOMAXPROCS*parallelism on the bench machine).
const poolSets = 128

var (
	poolOnce sync.Once
	pool     [][]defender.Login
	poolNext atomic.Int64
)

// pooledSet returns one of poolSets login sets built once, outside any
// timed region, in turn: RunParallel goroutines take one each without
// allocating 4096 logins inside the measurement.
func pooledSet() []defender.Login {
	poolOnce.Do(func() {
		pool = make([][]defender.Login, poolSets)
		for i := range pool {
			pool[i] = loginSet()
		}
	})
	return pool[(poolNext.Add(1)-1)%poolSets]
}

// op is one benchmarked operation on login l; i counts the calls.
type op func(d *defender.Defender, l defender.Login, i int)

var ops = []struct {
	name string
	fn   op
}{
	{"Check", func(d *defender.Defender, l defender.Login, _ int) {
		if dec := d.Check(ctx, l); !dec.Allowed() {
			panic(fmt.Sprintf("check: %+v", dec))
		}
	}},
	{"Failure", func(d *defender.Defender, l defender.Login, _ int) {
		a := d.Attempt(ctx, l)
		if !a.Decision().Allowed() {
			panic(fmt.Sprintf("attempt: %+v", a.Decision()))
		}
		a.Failed(ctx)
	}},
	{"Success", func(d *defender.Defender, l defender.Login, _ int) {
		a := d.Attempt(ctx, l)
		if !a.Decision().Allowed() {
			panic(fmt.Sprintf("attempt: %+v", a.Decision()))
		}
		a.Succeeded(ctx)
	}},
	{"Attempt", func(d *defender.Defender, l defender.Login, i int) {
		a := d.Attempt(ctx, l)
		if !a.Decision().Allowed() {
			panic(fmt.Sprintf("attempt: %+v", a.Decision()))
		}
		if i&1 == 0 {
			a.Succeeded(ctx)
		} else {
			a.Failed(ctx)
		}
	}},
}

// benchDefender is the one benchmark function run for every backend: each
// operation serially and under RunParallel (parallelism goroutines per
// GOMAXPROCS when > 0). It reports allocations and attempts/s.
func benchDefender(b *testing.B, d *defender.Defender, parallelism int, traffic func(*testing.B) map[string]float64) {
	for _, o := range ops {
		b.Run(o.name+"/serial", func(b *testing.B) {
			ls := loginSet()
			defer perOp(b, traffic)()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				o.fn(d, ls[i%logins], i)
				i++
			}
			perSecond(b)
		})
		b.Run(o.name+"/parallel", func(b *testing.B) {
			if parallelism > 0 {
				b.SetParallelism(parallelism)
			}
			defer perOp(b, traffic)()
			b.ReportAllocs()
			pooledSet() // build the pool before the clock starts
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ls := pooledSet()
				i := 0
				for pb.Next() {
					o.fn(d, ls[i%logins], i)
					i++
				}
			})
			perSecond(b)
		})
	}
}

// perOp reads the server's traffic counters now and returns a function
// that reports their increase per operation (for example cmds/op,
// net-B/op). Without a traffic function it does nothing.
func perOp(b *testing.B, traffic func(*testing.B) map[string]float64) func() {
	if traffic == nil {
		return func() {}
	}
	before := traffic(b)
	return func() {
		for unit, v := range traffic(b) {
			b.ReportMetric((v-before[unit])/float64(b.N), unit)
		}
	}
}

// perSecond reports the operations per second of b (metric ops/s).
func perSecond(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

// BenchmarkBackend runs benchDefender on every backend:
// BenchmarkBackend/<store>/<op>/<serial|parallel>.
func BenchmarkBackend(b *testing.B) {
	for _, s := range stores() {
		b.Run(s.name, func(b *testing.B) {
			benchDefender(b, newDefender(b, s.open(b)), s.parallelism, s.traffic)
		})
	}
}
