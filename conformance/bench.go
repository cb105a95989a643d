package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/defender"
)

// BenchOptions tunes Bench. The zero value (or nil) is fine for an
// in-process store.
type BenchOptions struct {
	// Parallelism is given to b.SetParallelism in the parallel runs: the
	// number of goroutines per GOMAXPROCS. 0 means the testing default,
	// one. A store behind a network wants more, so that calls overlap
	// their round trips (this repository uses 8 for Redis and Memcached,
	// 32 for bolt, whose writes share each commit).
	Parallelism int

	// Floor, when not nil, is the store's own cheapest round trip (a
	// "ping"). Bench then also measures it alone (Floor/serial,
	// Floor/parallel) and interleaved with each operation
	// (Paired/<operation>, see BenchPaired), which gives the ratio x-floor:
	// what the login path costs in round trips to your store.
	Floor *Floor

	// Traffic, when not nil, returns the store's counters so far (a metric
	// unit such as "cmds/op" or "net-B/op" to a running total, for example
	// from a server's statistics). Bench reports the increase of each per
	// operation in the serial and parallel runs.
	Traffic func(b *testing.B) map[string]float64
}

// Floor is the reference that BenchPaired compares the login operations
// with: the cheapest thing a limiter could do with the store.
type Floor struct {
	// Setup returns the floor operation for the store under b; it is called
	// with i = 0, 1, 2, ... (use i to vary keys) and, in the parallel run,
	// from several goroutines at once. Setup may register b.Cleanup.
	// Required.
	Setup func(b *testing.B) func(i int) error

	// Batch is how many calls of the floor, then of the operation, are
	// timed together in the paired runs: 1 for a network round trip,
	// more (64) for an in-process floor, so that reading the clock costs
	// little beside the calls. 0 means 1.
	Batch int
}

// benchLogins is the number of distinct identities a run rotates over.
const benchLogins = 4096

// BenchOps are the names of the operations Bench and BenchPaired measure,
// in order:
//
//   - Check: Defender.Check, what a page view costs (one read of the IP's
//     and the username's block keys).
//   - Failure: Attempt, then Failed, on identities far below the limit (the
//     limit is 2^30 and 4096 identities rotate), so that no block is ever
//     set: the check, the reservation and the settlement of a wrong
//     password.
//   - Success: Attempt, then Succeeded (counters reset or refunded).
//   - Attempt: the whole login as the HTTP middleware performs it, half
//     successes and half failures.
var BenchOps = []string{"Check", "Failure", "Success", "Attempt"}

// benchOp is one measured operation on login l; i counts the calls.
type benchOp func(ctx context.Context, d *defender.Defender, l defender.Login, i int) error

var benchOps = map[string]benchOp{
	"Check": func(ctx context.Context, d *defender.Defender, l defender.Login, _ int) error {
		if dec := d.Check(ctx, l); !dec.Allowed() {
			return fmt.Errorf("Check(%v, %q) = %+v, want Allowed", l.IP, l.Username, dec)
		}
		return nil
	},
	"Failure": func(ctx context.Context, d *defender.Defender, l defender.Login, _ int) error {
		a := d.Attempt(ctx, l)
		if dec := a.Decision(); !dec.Allowed() {
			return fmt.Errorf("Attempt(%v, %q) = %+v, want Allowed", l.IP, l.Username, dec)
		}
		a.Failed(ctx)
		return nil
	},
	"Success": func(ctx context.Context, d *defender.Defender, l defender.Login, _ int) error {
		a := d.Attempt(ctx, l)
		if dec := a.Decision(); !dec.Allowed() {
			return fmt.Errorf("Attempt(%v, %q) = %+v, want Allowed", l.IP, l.Username, dec)
		}
		a.Succeeded(ctx)
		return nil
	},
	"Attempt": func(ctx context.Context, d *defender.Defender, l defender.Login, i int) error {
		a := d.Attempt(ctx, l)
		if dec := a.Decision(); !dec.Allowed() {
			return fmt.Errorf("Attempt(%v, %q) = %+v, want Allowed", l.IP, l.Username, dec)
		}
		if i&1 == 0 {
			a.Succeeded(ctx)
		} else {
			a.Failed(ctx)
		}
		return nil
	},
}

// Bench measures the login path of defender over the backend that open
// returns, in the style of Run: call it from a benchmark of your backend's
// package.
//
//	func BenchmarkMyStore(b *testing.B) {
//		conformance.Bench(b, func(b *testing.B) backend.Backend {
//			s, err := mystore.Open(...)
//			if err != nil {
//				b.Fatal(err)
//			}
//			b.Cleanup(func() { s.Close() })
//			return s
//		}, &conformance.BenchOptions{Floor: &conformance.Floor{Setup: ping}})
//	}
//
// open is called once per Bench call; the backend need not be empty, and
// Bench does not close it (register b.Cleanup in open). Bench runs each of
// BenchOps serially and under b.RunParallel, as sub-benchmarks named
// <operation>/serial and <operation>/parallel, through a defender.Defender
// with the default configuration whose limit is never reached and without
// an audit log, so that the store path is what is measured. Every run
// reports ns/op, B/op, allocs/op and ops/s (and the per-operation increase
// of opts.Traffic). With opts.Floor it also runs Floor/serial,
// Floor/parallel and Paired/<operation> (see BenchPaired).
//
// The benchmarks of this repository (bench/) call Bench for every built-in
// backend, so a third-party backend's numbers compare with the published
// ones line by line.
func Bench(b *testing.B, open func(b *testing.B) backend.Backend, opts *BenchOptions) {
	b.Helper()
	var o BenchOptions
	if opts != nil {
		o = *opts
	}
	d := benchDefender(b, open(b))
	for _, name := range BenchOps {
		op := benchOps[name]
		b.Run(name+"/serial", func(b *testing.B) {
			ls := newLoginSet()
			defer perOp(b, o.Traffic)()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := op(context.Background(), d, ls[i%benchLogins], i); err != nil {
					b.Fatal(err)
				}
				i++
			}
			perSecond(b)
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			if o.Parallelism > 0 {
				b.SetParallelism(o.Parallelism)
			}
			pool := loginPool()
			defer perOp(b, o.Traffic)()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ls := pool.next()
				i := 0
				for pb.Next() {
					if err := op(context.Background(), d, ls[i%benchLogins], i); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			perSecond(b)
		})
	}
	if o.Floor != nil {
		b.Run("Floor", func(b *testing.B) { BenchFloor(b, *o.Floor, o.Parallelism) })
		b.Run("Paired", func(b *testing.B) { benchPaired(b, d, *o.Floor) })
	}
}

// BenchPaired measures each of BenchOps serially over the backend that
// open returns, alternating batches of the operation and of floor in one
// loop, as sub-benchmarks named after the operation. Besides B/op and
// allocs/op it reports the operation's and the floor's latencies (op-ns,
// floor-ns) and their ratio (x-floor). On a shared, noisy machine the ratio
// of interleaved batches is far more stable than the ratio of two
// benchmarks run seconds apart: both sides see the same load.
func BenchPaired(b *testing.B, open func(b *testing.B) backend.Backend, floor Floor) {
	b.Helper()
	benchPaired(b, benchDefender(b, open(b)), floor)
}

func benchPaired(b *testing.B, d *defender.Defender, floor Floor) {
	if floor.Setup == nil {
		b.Fatal("conformance: Floor.Setup is nil")
	}
	fl := floor.Setup(b)
	batch := max(floor.Batch, 1)
	for _, name := range BenchOps {
		op := benchOps[name]
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			ls := newLoginSet()
			var tOp, tFloor time.Duration
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				for k := range batch {
					if err := fl(n + k); err != nil {
						b.Fatalf("floor: %v", err)
					}
				}
				t1 := time.Now()
				for k := range batch {
					if err := op(ctx, d, ls[(n+k)%benchLogins], n+k); err != nil {
						b.Fatal(err)
					}
				}
				t2 := time.Now()
				tFloor += t1.Sub(t0)
				tOp += t2.Sub(t1)
				n += batch
			}
			b.ReportMetric(float64(tOp)/float64(n), "op-ns")
			b.ReportMetric(float64(tFloor)/float64(n), "floor-ns")
			b.ReportMetric(float64(tOp)/float64(tFloor), "x-floor")
		})
	}
}

// BenchFloor measures floor alone, as the sub-benchmarks serial and
// parallel (with b.SetParallelism(parallelism) when parallelism > 0), each
// reporting ns/op, B/op, allocs/op and ops/s: the store's own speed, to
// compare with the parallel runs of Bench.
func BenchFloor(b *testing.B, floor Floor, parallelism int) {
	b.Helper()
	if floor.Setup == nil {
		b.Fatal("conformance: Floor.Setup is nil")
	}
	fl := floor.Setup(b)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := fl(i); err != nil {
				b.Fatalf("floor: %v", err)
			}
			i++
		}
		perSecond(b)
	})
	b.Run("parallel", func(b *testing.B) {
		if parallelism > 0 {
			b.SetParallelism(parallelism)
		}
		var seq atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(1)) * benchLogins
			for pb.Next() {
				if err := fl(i); err != nil {
					b.Errorf("floor: %v", err)
					return
				}
				i++
			}
		})
		perSecond(b)
	})
}

// MutexMapFloor is the floor of an in-process store: one map under one
// mutex, where an attempt looks at 2 block keys and increments 2 counters,
// with keys prepared in advance. Batch is 64.
func MutexMapFloor() Floor {
	return Floor{Batch: 64, Setup: func(*testing.B) func(int) error {
		m := &mutexMap{m: map[string]int64{}}
		blocks, counters := floorKeys()
		return func(i int) error {
			m.attempt(&blocks[i%benchLogins], &counters[i%benchLogins])
			return nil
		}
	}}
}

// mutexMap is the in-process floor's store.
type mutexMap struct {
	mu sync.Mutex
	m  map[string]int64
}

func (f *mutexMap) attempt(blocks, counters *[2]string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range blocks {
		if _, ok := f.m[k]; ok {
			return false
		}
	}
	for _, k := range counters {
		f.m[k]++
	}
	return true
}

// floorKeys returns the block and counter keys of benchLogins identities.
func floorKeys() (blocks, counters [][2]string) {
	base := int(loginSeq.Add(1)) * benchLogins
	blocks = make([][2]string, benchLogins)
	counters = make([][2]string, benchLogins)
	for i := range blocks {
		n := strconv.Itoa(base + i)
		blocks[i] = [2]string{"defender:b:ip:10.0." + n, "defender:b:u:user" + n}
		counters[i] = [2]string{"defender:f:ip:10.0." + n, "defender:f:u:user" + n}
	}
	return blocks, counters
}

// benchDefender returns a Defender on st whose limit is never reached,
// without an audit log, closed when b ends.
func benchDefender(b *testing.B, st backend.Backend) *defender.Defender {
	b.Helper()
	if st == nil {
		b.Fatal("conformance: open returned a nil Backend")
	}
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1 << 30
	cfg.StoreAccessAttempts = false
	cfg.StoreTimeout = 5 * time.Second
	d, err := defender.New(st, cfg, &defender.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// loginSeq makes every login set distinct within the process.
var loginSeq atomic.Int64

// newLoginSet returns benchLogins distinct identities (IPv4 address and
// username) that no other set of the process uses.
func newLoginSet() []defender.Login {
	base := uint32(loginSeq.Add(1)) * benchLogins
	ls := make([]defender.Login, benchLogins)
	for i := range ls {
		n := base + uint32(i)
		ls[i] = defender.Login{
			IP:       netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}),
			Username: "user" + strconv.FormatUint(uint64(n), 10),
		}
	}
	return ls
}

// loginPools is how many login sets a parallel run's goroutines take from,
// in turn: more than GOMAXPROCS × parallelism on a small machine.
const loginPools = 128

// setPool hands out login sets built before the timed region, in turn.
type setPool struct {
	sets [][]defender.Login
	n    atomic.Int64
}

func (p *setPool) next() []defender.Login {
	return p.sets[(p.n.Add(1)-1)%loginPools]
}

var (
	poolOnce sync.Once
	pool     setPool
)

// loginPool returns the process's pool of login sets, built once.
func loginPool() *setPool {
	poolOnce.Do(func() {
		pool.sets = make([][]defender.Login, loginPools)
		for i := range pool.sets {
			pool.sets[i] = newLoginSet()
		}
	})
	return &pool
}

// perOp reads traffic now and returns a function that reports the increase
// of each counter per operation. Without traffic it does nothing.
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
