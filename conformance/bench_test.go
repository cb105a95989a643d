package conformance

import (
	"context"
	"flag"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// shortBench sets -test.benchtime to n iterations for the rest of t.
func shortBench(t *testing.T, n string) {
	f := flag.Lookup("test.benchtime")
	old := f.Value.String()
	if err := f.Value.Set(n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Value.Set(old) })
}

// counting is the reference backend counting its calls.
type counting struct {
	*ref
	calls atomic.Int64
}

func (c *counting) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	c.calls.Add(1)
	return c.ref.Incr(ctx, keys, delta, ttl)
}

func (c *counting) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	c.calls.Add(1)
	return c.ref.Get(ctx, keys)
}

// TestBench runs Bench, with a floor and a traffic counter, on the
// reference backend: every operation reaches the store, the floor and the
// traffic function are used, and nothing fails.
func TestBench(t *testing.T) {
	shortBench(t, "20x")
	st := &counting{ref: newRef(time.Now, false, 0)}
	var floorCalls, trafficCalls atomic.Int64
	mm := MutexMapFloor()
	floor := Floor{Batch: 4, Setup: func(b *testing.B) func(int) error {
		f := mm.Setup(b)
		return func(i int) error { floorCalls.Add(1); return f(i) }
	}}
	var failed bool
	testing.Benchmark(func(b *testing.B) {
		b.Run("ref", func(b *testing.B) {
			Bench(b, func(*testing.B) backend.Backend { return st }, &BenchOptions{
				Parallelism: 2,
				Floor:       &floor,
				Traffic: func(*testing.B) map[string]float64 {
					return map[string]float64{"calls/op": float64(trafficCalls.Add(1))}
				},
			})
			failed = b.Failed()
		})
	})
	if failed {
		t.Fatal("Bench failed on the reference backend")
	}
	if st.calls.Load() == 0 || floorCalls.Load() == 0 || trafficCalls.Load() == 0 {
		t.Fatalf("store calls %d, floor calls %d, traffic reads %d; want all > 0", st.calls.Load(), floorCalls.Load(), trafficCalls.Load())
	}
	before := st.calls.Load()
	testing.Benchmark(func(b *testing.B) {
		BenchPaired(b, func(*testing.B) backend.Backend { return st }, MutexMapFloor())
	})
	if st.calls.Load() == before {
		t.Fatal("BenchPaired made no store call")
	}
}

// TestBenchFailures: a store that refuses every call, a nil backend and a
// floor without Setup fail the benchmark instead of measuring nothing.
func TestBenchFailures(t *testing.T) {
	shortBench(t, "5x")
	cases := map[string]func(b *testing.B){
		"StoreErrors": func(b *testing.B) {
			Bench(b, func(*testing.B) backend.Backend { return &faulty{ref: newRef(time.Now, false, 0), fault: faultErr} }, nil)
		},
		"Blocked": func(b *testing.B) {
			r := newRef(time.Now, false, 0)
			Bench(b, func(*testing.B) backend.Backend { return blockedAll{r} }, nil)
		},
		"NilBackend": func(b *testing.B) { Bench(b, func(*testing.B) backend.Backend { return nil }, nil) },
		"NoFloorSetup": func(b *testing.B) {
			BenchPaired(b, func(*testing.B) backend.Backend { return newRef(time.Now, false, 0) }, Floor{})
		},
		"NoFloorSetupAlone": func(b *testing.B) { BenchFloor(b, Floor{}, 0) },
		"FloorErrors": func(b *testing.B) {
			BenchFloor(b, Floor{Setup: func(*testing.B) func(int) error { return func(int) error { return errBoom } }}, 0)
		},
		"PairedFloorErrors": func(b *testing.B) {
			BenchPaired(b, func(*testing.B) backend.Backend { return newRef(time.Now, false, 0) },
				Floor{Setup: func(*testing.B) func(int) error { return func(int) error { return errBoom } }})
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			var failed bool
			testing.Benchmark(func(b *testing.B) {
				b.Run(name, func(b *testing.B) {
					defer func() { failed = b.Failed() }()
					f(b)
				})
			})
			if !failed {
				t.Errorf("the benchmark passed, want it to fail")
			}
		})
	}
}

// blockedAll is a store on which every identity is blocked.
type blockedAll struct{ *ref }

func (s blockedAll) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	es, err := s.ref.Get(ctx, keys)
	for i := range es {
		es[i] = backend.Entry{Key: keys[i], Found: true, Value: []byte("{}")}
	}
	return es, err
}
