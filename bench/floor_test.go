package bench

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/go-defender/defender/conformance"
	"github.com/go-defender/defender/defender"
)

// keyedMap is the floor with the keys built from the login each time, as
// any real limiter must: the IP's text form and the lower-cased username,
// into 2 block keys and 2 counter keys (4 small allocations), then one
// mutex-guarded map that checks the blocks and increments the counters.
type keyedMap struct {
	mu sync.Mutex
	m  map[string]int64
}

func (f *keyedMap) attemptLogin(l defender.Login) bool {
	ip, user := l.IP.String(), strings.ToLower(strings.TrimSpace(l.Username))
	blocks := [2]string{"defender:b:ip:" + ip, "defender:b:u:" + user}
	counters := [2]string{"defender:f:ip:" + ip, "defender:f:u:" + user}
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

// BenchmarkFloor measures the references of docs/benchmarks.md in the same
// run as BenchmarkBackend: BenchmarkFloor/<reference>/<serial|parallel>.
// mutexmap is conformance.MutexMapFloor, the floor of BenchmarkPaired for
// the memory store.
func BenchmarkFloor(b *testing.B) {
	b.Run("mutexmap", func(b *testing.B) { conformance.BenchFloor(b, conformance.MutexMapFloor(), 0) })
	b.Run("mutexmap-keys", func(b *testing.B) {
		f := &keyedMap{m: map[string]int64{}}
		base := uint32(seq.Add(1)) * logins
		ls := make([]defender.Login, logins)
		for i := range ls {
			n := base + uint32(i)
			ls[i] = defender.Login{IP: netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), Username: fmt.Sprintf("user%d", n)}
		}
		b.Run("serial", func(b *testing.B) {
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

// perSecond reports the operations per second of b (metric ops/s).
func perSecond(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}
