package memory

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// floor is the reference of docs/benchmarks.md: one mutex-guarded
// map, check 2 keys and increment 2 counters.
type floor struct {
	mu sync.Mutex
	m  map[string]int64
}

func (f *floor) attempt(blocks, counters []string, del bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range blocks {
		if _, ok := f.m[b]; ok {
			return false
		}
	}
	for _, c := range counters {
		f.m[c]++
	}
	if del {
		for _, c := range counters {
			delete(f.m, c)
		}
	}
	return true
}

var seq atomic.Int64

func attemptKeys() *backend.Reservation {
	id := strconv.FormatInt(seq.Add(1), 10)
	return &backend.Reservation{
		Blocks:   []string{"defender:b:ip:198.51.100." + id, "defender:b:u:alice" + id},
		Counters: []string{"defender:f:ip:198.51.100." + id, "defender:f:u:alice" + id},
		TTL:      5 * time.Minute,
		Counts:   make([]int64, 0, 2),
	}
}

// BenchmarkFloor is the mutex-map floor (check 2 + increment 2), and the
// same with the success path's delete of both counters.
func BenchmarkFloor(b *testing.B) {
	for _, del := range []bool{false, true} {
		name := "check2+incr2"
		if del {
			name += "+delete2"
		}
		b.Run(name+"/serial", func(b *testing.B) {
			f := &floor{m: map[string]int64{}}
			r := attemptKeys()
			b.ReportAllocs()
			for b.Loop() {
				f.attempt(r.Blocks, r.Counters, del)
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			f := &floor{m: map[string]int64{}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := attemptKeys()
				for pb.Next() {
					f.attempt(r.Blocks, r.Counters, del)
				}
			})
		})
	}
}

// BenchmarkReserve measures the login hot path: Reserve alone (counters
// already present), and a whole attempt (Reserve of 2 block keys and 2 new
// counters, then the success's Delete of both counters).
func BenchmarkReserve(b *testing.B) {
	ctx := context.Background()
	for _, whole := range []bool{false, true} {
		name := "reserve"
		if whole {
			name = "attempt"
		}
		b.Run(name+"/serial", func(b *testing.B) {
			s := open(b, &Options{SweepInterval: -1})
			r := attemptKeys()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Reserve(ctx, r); err != nil {
					b.Fatal(err)
				}
				if whole {
					if err := s.Delete(ctx, r.Counters...); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			s := open(b, &Options{SweepInterval: -1})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := attemptKeys()
				for pb.Next() {
					if err := s.Reserve(ctx, r); err != nil {
						b.Error(err)
						return
					}
					if whole {
						if err := s.Delete(ctx, r.Counters...); err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
		})
	}
}
