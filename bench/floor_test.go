package bench

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-defender/defender/defender"
)

// mutexMap is the floor of shared/spec/performance.md: one mutex-guarded
// map; an attempt checks 2 block keys and increments 2 counters.
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

// attemptLogin is the floor with the keys built from the login each time,
// as any real limiter must: the IP's text form and the lower-cased
// username, into the 2 block keys and 2 counter keys (4 small allocations).
func (f *mutexMap) attemptLogin(l defender.Login) bool {
	ip, user := l.IP.String(), strings.ToLower(strings.TrimSpace(l.Username))
	blocks := [2]string{"defender:b:ip:" + ip, "defender:b:u:" + user}
	counters := [2]string{"defender:f:ip:" + ip, "defender:f:u:" + user}
	return f.attempt(&blocks, &counters)
}

// floorKeys returns the keys of logins distinct identities.
func floorKeys() (blocks, counters [][2]string) {
	base := int(seq.Add(1)) * logins
	blocks = make([][2]string, logins)
	counters = make([][2]string, logins)
	for i := range blocks {
		n := strconv.Itoa(base + i)
		blocks[i] = [2]string{"defender:b:ip:10.0." + n, "defender:b:u:user" + n}
		counters[i] = [2]string{"defender:f:ip:10.0." + n, "defender:f:u:user" + n}
	}
	return blocks, counters
}

// BenchmarkFloor measures the references of performance.md in the same run
// as BenchmarkBackend: BenchmarkFloor/<reference>/<serial|parallel>.
func BenchmarkFloor(b *testing.B) {
	b.Run("mutexmap", func(b *testing.B) {
		f := &mutexMap{m: map[string]int64{}}
		b.Run("serial", func(b *testing.B) {
			bl, cs := floorKeys()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.attempt(&bl[i%logins], &cs[i%logins])
				i++
			}
			perSecond(b)
		})
		b.Run("parallel", func(b *testing.B) {
			sets := make(chan [2][][2]string, runtime.GOMAXPROCS(0))
			for range cap(sets) {
				bl, cs := floorKeys()
				sets <- [2][][2]string{bl, cs}
			}
			b.ResetTimer()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				set := <-sets
				bl, cs := set[0], set[1]
				i := 0
				for pb.Next() {
					f.attempt(&bl[i%logins], &cs[i%logins])
					i++
				}
			})
			perSecond(b)
		})
	})
	b.Run("mutexmap-keys", func(b *testing.B) {
		f := &mutexMap{m: map[string]int64{}}
		b.Run("serial", func(b *testing.B) {
			ls := loginSet()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.attemptLogin(ls[i%logins])
				i++
			}
			perSecond(b)
		})
	})
	for _, n := range order {
		for _, f := range floors {
			if f.store == n {
				b.Run(f.name, f.run)
			}
		}
	}
}

// floors are the references of the stores, registered by their files.
var floors []floor

type floor struct {
	store, name string
	run         func(b *testing.B)
}

// roundTrip benchmarks one store round trip serially and in parallel.
func roundTrip(b *testing.B, parallelism int, fn func() error) {
	b.Run("serial", func(b *testing.B) { serial(b, fn) })
	b.Run("parallel", func(b *testing.B) { parallel(b, parallelism, fn) })
}

func serial(b *testing.B, fn func() error) {
	b.ReportAllocs()
	for b.Loop() {
		if err := fn(); err != nil {
			b.Fatal(err)
		}
	}
	perSecond(b)
}

func parallel(b *testing.B, parallelism int, fn func() error) {
	if parallelism > 0 {
		b.SetParallelism(parallelism)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := fn(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	perSecond(b)
}
