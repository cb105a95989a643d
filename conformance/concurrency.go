package conformance

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-defender/defender/backend"
)

const (
	workers    = 64
	increments = 50
	reservers  = 100
)

// parallel runs f(i) on n goroutines released at once and waits for them.
func parallel(n int, f func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			start.Wait()
			f(i)
		}()
	}
	start.Done()
	done.Wait()
}

func (s *suite) concurrencyChecks() []check {
	return []check{
		{"Incr", func(t tb) {
			// Concurrent increments are never lost: 64 x 50 = 3200.
			b := s.open(t)
			c := ctx(t)
			parallel(workers, func(int) {
				for j := 0; j < increments; j++ {
					if _, err := b.Incr(c, []string{"cc:one"}, 1, hour); err != nil {
						t.Errorf("Incr: %v", err)
						return
					}
				}
			})
			if e := get1(t, b, "cc:one"); string(e.Value) != strconv.Itoa(workers*increments) {
				t.Errorf("after %d goroutines x %d increments: counter = %s, want %d (increments were lost)", workers, increments, entryValue(e), workers*increments)
			}
		}},
		{"IncrSeveralKeys", func(t tb) {
			// The same with three keys per call, in varying order, and a
			// refund (-1) after every other increment.
			b := s.open(t)
			c := ctx(t)
			keys := []string{"cc:a", "cc:b", "cc:c"}
			parallel(workers, func(i int) {
				ks := []string{keys[i%3], keys[(i+1)%3], keys[(i+2)%3]}
				for j := 0; j < increments; j++ {
					if _, err := b.Incr(c, ks, 2, hour); err != nil {
						t.Errorf("Incr: %v", err)
						return
					}
					if _, err := b.Incr(c, ks[:2], -1, hour); err != nil {
						t.Errorf("Incr: %v", err)
						return
					}
				}
			})
			perKey := map[string]int64{}
			for i := 0; i < workers; i++ {
				ks := []string{keys[i%3], keys[(i+1)%3], keys[(i+2)%3]}
				perKey[ks[0]] += increments
				perKey[ks[1]] += increments
				perKey[ks[2]] += 2 * increments
			}
			for _, e := range get(t, b, keys...) {
				if string(e.Value) != strconv.FormatInt(perKey[e.Key], 10) {
					t.Errorf("counter %q = %s, want %d", e.Key, entryValue(e), perKey[e.Key])
				}
			}
		}},
		{"ReserveRacingBlock", s.reserveRacingBlock},
		{"Reserve", func(t tb) {
			// 100 concurrent reservations on one counter see exactly the
			// counts 1..100, each once.
			b := s.open(t)
			c := ctx(t)
			counts := make([]int64, reservers)
			parallel(reservers, func(i int) {
				r := backend.Reservation{
					Blocks:   []string{"cr:block"},
					Counters: []string{"cr:count"},
					TTL:      hour,
				}
				if err := backend.Reserve(c, b, &r); err != nil {
					t.Errorf("Reserve: %v", err)
					return
				}
				if r.Blocked != -1 || len(r.Counts) != 1 {
					t.Errorf("Reserve = Blocked %d Counts %v, want -1 and one count", r.Blocked, r.Counts)
					return
				}
				counts[i] = r.Counts[0]
			})
			sort.Slice(counts, func(i, j int) bool { return counts[i] < counts[j] })
			for i, n := range counts {
				if n != int64(i+1) {
					t.Errorf("%d concurrent Reserves returned counts %v, want exactly 1..%d each once", reservers, counts, reservers)
					break
				}
			}
		}},
	}
}

// reserveRacingBlock pins the ordering rule of backend.Reserve: a
// reservation racing with backend.Block either sees the new block or counts
// on top of the count that caused it; it never starts a fresh counter behind
// the block (which would let an attempt through, verified, during a block).
func (s *suite) reserveRacingBlock(t tb) {
	b := s.open(t)
	c := ctx(t)
	const rounds, before = 10, limit + 1
	for round := 0; round < rounds; round++ {
		counter := fmt.Sprintf("rb:%d:count", round)
		blockKey := fmt.Sprintf("rb:%d:block", round)
		incr1(t, b, counter, before, hour)
		var started atomic.Int64
		var fresh []int64
		var mu sync.Mutex
		parallel(reservers+1, func(i int) {
			if i == 0 {
				for started.Load() < reservers/2 {
					runtime.Gosched()
				}
				_, err := backend.Block(c, b, backend.BlockRequest{
					BlockKey: blockKey, Value: []byte("v"), CounterKey: counter,
					LockoutsKey: fmt.Sprintf("rb:%d:lockouts", round), Window: hour,
					Durations: []time.Duration{hour},
				})
				if err != nil {
					t.Errorf("Block: %v", err)
				}
				return
			}
			started.Add(1)
			r := backend.Reservation{Blocks: []string{blockKey}, Counters: []string{counter}, TTL: hour}
			if err := backend.Reserve(c, b, &r); err != nil {
				t.Errorf("Reserve: %v", err)
				return
			}
			if r.Blocked == -1 && len(r.Counts) == 1 && r.Counts[0] <= before {
				mu.Lock()
				fresh = append(fresh, r.Counts[0])
				mu.Unlock()
			}
		})
		if len(fresh) > 0 {
			t.Errorf("round %d: %d reservations racing with Block were let through with fresh counts %v (the counter stood at %d): a reservation must read the blocks no earlier than it increments (the ordering rule of backend.Reserve)", round, len(fresh), fresh, before)
		}
		r := backend.Reservation{Blocks: []string{blockKey}, Counters: []string{counter}, TTL: hour}
		reserve(t, b, &r)
		if r.Blocked != 0 {
			t.Errorf("round %d: Reserve after Block = Blocked %d, want 0", round, r.Blocked)
		}
	}
}
