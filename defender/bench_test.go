package defender

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/go-defender/defender/backend/memory"
)

// BenchmarkAttemptMemory measures one whole login attempt (check and
// reserve, then settle) on the memory backend: the engine's own cost.
func BenchmarkAttemptMemory(b *testing.B) {
	st, _ := memory.New(nil)
	defer st.Close()
	cfg := DefaultConfig()
	cfg.FailureLimit = 1 << 30
	cfg.StoreAccessAttempts = false
	d, _ := New(st, cfg, nil)
	defer d.Close()
	l := Login{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice"}
	b.Run("failure", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d.Attempt(ctx, l).Failed(ctx)
		}
	})
	b.Run("success", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d.Attempt(ctx, l).Succeeded(ctx)
		}
	})
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d.Check(ctx, l)
		}
	})
	b.Run("failure-into", func(b *testing.B) {
		var a Attempt
		b.ReportAllocs()
		for b.Loop() {
			d.AttemptInto(ctx, l, &a)
			a.Failed(ctx)
		}
	})
	// A blocked client: the attempt is refused without being counted.
	cfg.FailureLimit = 1
	dl, _ := New(st, cfg, nil)
	defer dl.Close()
	locked := Login{IP: netip.MustParseAddr("192.0.2.9"), Username: "mallory"}
	for i := 0; i < 3; i++ {
		dl.Attempt(ctx, locked).Failed(ctx)
	}
	b.Run("locked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if dl.Attempt(ctx, locked).Decision().Verdict != Locked {
				b.Fatal("not locked")
			}
		}
	})
}

// BenchmarkMutexMapFloor is docs/benchmarks.md's floor: a mutex-guarded map,
// check 2 keys and increment 2 counters.
func BenchmarkMutexMapFloor(b *testing.B) {
	var mu sync.Mutex
	m := map[string]int64{}
	k1, k2, b1, b2 := "defender:f:{i:192.0.2.1}", "defender:f:{u:alice}", "defender:b:{i:192.0.2.1}", "defender:b:{u:alice}"
	b.ReportAllocs()
	for b.Loop() {
		mu.Lock()
		_, x := m[b1]
		_, y := m[b2]
		if !x && !y {
			m[k1]++
			m[k2]++
		}
		mu.Unlock()
	}
}
