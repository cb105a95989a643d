package bench

import (
	"testing"
	"time"
)

// pairedFloor is the reference an operation is compared with in
// BenchmarkPaired: setup returns the floor operation (its i-th call) for
// the store under b, and batch is how many calls are timed together (so
// that the clock's own cost is negligible beside fast in-process calls).
type pairedFloor struct {
	setup func(b *testing.B) func(i int) error
	batch int
}

// pairedFloors maps a store name to its floor, registered by the files
// that know them.
var pairedFloors = map[string]pairedFloor{}

// BenchmarkPaired measures each operation of benchDefender serially,
// alternating batches of the operation and of the store's floor (mutex
// map, PING, memcached get) in the same loop, and reports their latencies
// (op-ns, floor-ns) and the ratio (x-floor). On a shared, noisy machine the
// ratio of interleaved batches is far more stable than the ratio of two
// benchmarks run seconds apart: both sides see the same load.
// BenchmarkPaired/<store>/<op>.
func BenchmarkPaired(b *testing.B) {
	for _, s := range stores() {
		pf, ok := pairedFloors[s.name]
		if !ok {
			continue
		}
		b.Run(s.name, func(b *testing.B) {
			d := newDefender(b, s.open(b))
			floor := pf.setup(b)
			for _, o := range ops {
				b.Run(o.name, func(b *testing.B) {
					ls := loginSet()
					var tOp, tFloor time.Duration
					n, i := 0, 0
					b.ReportAllocs()
					for b.Loop() {
						t0 := time.Now()
						for k := 0; k < pf.batch; k++ {
							if err := floor(i + k); err != nil {
								b.Fatal(err)
							}
						}
						t1 := time.Now()
						for k := 0; k < pf.batch; k++ {
							o.fn(d, ls[(i+k)%logins], i+k)
						}
						t2 := time.Now()
						tFloor += t1.Sub(t0)
						tOp += t2.Sub(t1)
						i += pf.batch
						n += pf.batch
					}
					b.ReportMetric(float64(tOp)/float64(n), "op-ns")
					b.ReportMetric(float64(tFloor)/float64(n), "floor-ns")
					b.ReportMetric(float64(tOp)/float64(tFloor), "x-floor")
				})
			}
		})
	}
}

// mutexFloor is the mutex-map floor for in-process stores.
var mutexFloor = pairedFloor{batch: 64, setup: func(b *testing.B) func(int) error {
	f := &mutexMap{m: map[string]int64{}}
	bl, cs := floorKeys()
	return func(i int) error {
		f.attempt(&bl[i%logins], &cs[i%logins])
		return nil
	}
}}

func init() { pairedFloors["memory"] = mutexFloor }
