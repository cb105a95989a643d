package bolt

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

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

// BenchmarkReserve measures, with fsync on: a check of a blocked request
// (read-only, never the write lock), a failure (Reserve that counts, the
// write coalesced by DB.Batch with concurrent ones), and a whole successful
// attempt (Reserve, then Delete of both counters).
func BenchmarkReserve(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []string{"blocked", "reserve", "attempt"} {
		setup := func(b *testing.B, s *Store, r *backend.Reservation) {
			if mode == "blocked" {
				if err := s.SetBlock(ctx, r.Blocks[1], []byte("x"), time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		}
		step := func(s *Store, r *backend.Reservation) error {
			if err := s.Reserve(ctx, r); err != nil {
				return err
			}
			if mode == "attempt" {
				return s.Delete(ctx, r.Counters...)
			}
			return nil
		}
		b.Run(mode+"/serial", func(b *testing.B) {
			s := open(b, &Options{SweepInterval: -1})
			r := attemptKeys()
			setup(b, s, r)
			b.ReportAllocs()
			for b.Loop() {
				if err := step(s, r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(mode+"/parallel", func(b *testing.B) {
			s := open(b, &Options{SweepInterval: -1})
			b.SetParallelism(32) // many concurrent logins: what DB.Batch coalesces
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := attemptKeys()
				setup(b, s, r)
				for pb.Next() {
					if err := step(s, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkFlood measures a failure flood with fsync on: g concurrent
// attempts, each a Reserve that counts (the writes group-committed). The
// attempts/s metric is the sustained throughput.
func BenchmarkFlood(b *testing.B) {
	ctx := context.Background()
	for _, g := range []int{16, 64, 256} {
		b.Run("concurrency"+strconv.Itoa(g), func(b *testing.B) {
			s := open(b, &Options{SweepInterval: -1})
			b.SetParallelism((g + 1) / 2) // GOMAXPROCS is 2 here; the exact count matters less than the order
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				r := attemptKeys()
				for pb.Next() {
					if err := s.Reserve(ctx, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "attempts/s")
		})
	}
}
