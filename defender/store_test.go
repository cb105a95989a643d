package defender

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

func TestDeltaQuantile(t *testing.T) {
	h := &metrics.Float64Histogram{
		Counts:  []uint64{10, 20, 30, 40},
		Buckets: []float64{0, 0.001, 0.01, 0.1, math.Inf(1)},
	}
	if got := deltaQuantile(h, []uint64{10, 20, 30, 40}, 0.99); got != 0 {
		t.Errorf("nothing new: %v", got)
	}
	if got := deltaQuantile(h, []uint64{0, 20, 30, 40}, 0.99); got != 0.001 {
		t.Errorf("only fast samples: %v", got)
	}
	if got := deltaQuantile(h, []uint64{10, 20, 29, 30}, 0.99); got != 0.1 {
		t.Errorf("slow samples in the open bucket: %v, want its lower bound", got)
	}
	if got := deltaQuantile(h, []uint64{0, 0, 0, 40}, 0.5); got != 0.01 {
		t.Errorf("median: %v", got)
	}
}

// TestAllowanceFollowsTheScheduler: while the CPU is saturated, goroutines
// wait to run, and the deadline grows by that wait; idle, it shrinks back.
func TestAllowanceFollowsTheScheduler(t *testing.T) {
	s := newSchedSampler()
	s.allowance()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8*runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				for j := 0; j < 1e6; j++ {
					x += j
				}
				_ = x
			}
		}()
	}
	var busy time.Duration
	deadline := time.Now().Add(20 * time.Second)
	for busy < time.Millisecond && time.Now().Before(deadline) {
		time.Sleep(schedSampleEvery)
		busy = s.allowance()
	}
	close(stop)
	wg.Wait()
	if busy < time.Millisecond || busy > maxSchedAllowance {
		t.Fatalf("allowance under saturation %v", busy)
	}
	t.Logf("allowance with the CPU saturated: %v", busy)
	idle := busy
	for i := 0; i < 4*schedWindow && idle != 0; i++ {
		time.Sleep(schedSampleEvery)
		idle = s.allowance()
	}
	if idle >= busy {
		t.Fatalf("allowance stayed at %v once idle", idle)
	}
}

// blackHole is a store that, when down, never answers: calls wait for
// their context.
type blackHole struct {
	backend.Backend
	down  atomic.Bool
	calls atomic.Int64
}

func (b *blackHole) wait(ctx context.Context) error {
	b.calls.Add(1)
	if b.down.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (b *blackHole) Reserve(ctx context.Context, r *backend.Reservation) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	return backend.Reserve(ctx, b.Backend, r)
}

func (b *blackHole) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	if err := b.wait(ctx); err != nil {
		return nil, err
	}
	return b.Backend.Get(ctx, keys)
}

func (b *blackHole) Delete(ctx context.Context, keys ...string) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	return b.Backend.Delete(ctx, keys...)
}

func newBlackHole(t *testing.T) (*Defender, *blackHole) {
	t.Helper()
	st, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{Backend: st}
	cfg := DefaultConfig()
	cfg.StoreTimeout = 50 * time.Millisecond
	d, err := New(b, cfg, &Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); st.Close() })
	return d, b
}

// TestBreaker: the first call to a store that does not answer waits for
// the deadline; every later one is answered by the fail mode without a
// store call until a probe finds the store back.
func TestBreaker(t *testing.T) {
	d, b := newBlackHole(t)
	b.down.Store(true)
	if dec := d.Attempt(ctx, login("192.0.2.1", "u")).Decision(); dec.Verdict != Unavailable {
		t.Fatalf("%+v", dec)
	}
	waitOpen(t, d) // the prober's probe did not answer either
	probes := b.calls.Load()
	for i := 0; i < 20; i++ {
		if dec := d.Attempt(ctx, login("192.0.2.1", "u")).Decision(); dec.Verdict != Unavailable || dec.Err != errCircuitOpen {
			t.Fatalf("%+v", dec)
		}
		if dec := d.Check(ctx, login("192.0.2.1", "u")); dec.Verdict != Unavailable || dec.Err != errCircuitOpen {
			t.Fatalf("%+v", dec)
		}
	}
	if extra := b.calls.Load() - probes; extra > 2 {
		t.Fatalf("%d store calls while the breaker was open (only the prober's are expected)", extra)
	}
	b.down.Store(false)
	waitRecovered(t, d)
	if dec := d.Attempt(ctx, login("192.0.2.1", "u")).Decision(); !dec.Allowed() {
		t.Fatalf("after recovery: %+v", dec)
	}
}

// TestSuccessResetRetried: a success whose reset could not be made leaves
// no reservation behind once the store is back: a user who never fails is
// never locked, however many of their resets are lost.
func TestSuccessResetRetried(t *testing.T) {
	d, b := newBlackHole(t)
	alice := identity{kind: KindUsername, username: "alice"}
	for i := 0; i < 10; i++ {
		a := d.Attempt(ctx, login("192.0.2.1", "alice"))
		if !a.Decision().Allowed() {
			t.Fatalf("success %d: %+v", i, a.Decision())
		}
		b.down.Store(true) // the reset is lost
		if dec := a.Succeeded(ctx); !dec.Allowed() {
			t.Fatalf("success with the store down: %+v", dec)
		}
		b.down.Store(false)
		waitRecovered(t, d)
		waitFor(t, "the reset made again", func() bool { return counter(t, d, alice) == 0 })
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gatedDelete is a network-like store whose Delete waits for a gate.
type gatedDelete struct {
	*network
	gate chan struct{}
}

func (g *gatedDelete) Delete(ctx context.Context, keys ...string) error {
	<-g.gate
	return g.network.Delete(ctx, keys...)
}

// TestResetInOrder: a success's reset, made in the background, never
// erases a failure that came after it in this process: the next attempt on
// the same counters waits for the reset.
func TestResetInOrder(t *testing.T) {
	st, _ := memory.New(nil)
	defer st.Close()
	g := &gatedDelete{network: &network{Backend: st}, gate: make(chan struct{})}
	d, err := New(g, DefaultConfig(), &Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l := login("192.0.2.1", "alice")
	d.Attempt(ctx, l).Failed(ctx)
	d.Attempt(ctx, l).Succeeded(ctx) // its reset waits at the gate
	done := make(chan struct{})
	go func() {
		d.Attempt(ctx, l).Failed(ctx) // must come after the reset
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("an attempt overtook the reset of the success before it")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.gate)
	<-done
	if n := counter(t, d, identity{kind: KindUsername, username: "alice"}); n != 1 {
		t.Fatalf("alice's counter %d, want 1: the failure after the success", n)
	}
}

// failOnce is a network-like store whose next call fails.
type failOnce struct {
	*network
	fail atomic.Bool
}

func (f *failOnce) Reserve(ctx context.Context, r *backend.Reservation) error {
	if f.fail.CompareAndSwap(true, false) {
		return fmt.Errorf("once: %w", backend.ErrUnavailable)
	}
	return f.network.Reserve(ctx, r)
}

// TestBreakerConfirms: one failed call is not an outage until a probe
// confirms it: when the store answers the probe, the breaker stays closed
// and the next logins go to the store.
func TestBreakerConfirms(t *testing.T) {
	st, _ := memory.New(nil)
	defer st.Close()
	f := &failOnce{network: &network{Backend: st}}
	var evs []EventKind
	var mu sync.Mutex
	d, err := New(f, DefaultConfig(), &Options{Logger: slog.New(slog.DiscardHandler),
		Hooks: []Hook{func(ev Event) { mu.Lock(); evs = append(evs, ev.Kind); mu.Unlock() }}})
	if err != nil {
		t.Fatal(err)
	}
	f.fail.Store(true)
	if dec := d.Attempt(ctx, login("192.0.2.1", "u")).Decision(); dec.Verdict != Unavailable {
		t.Fatalf("the failed call: %+v", dec)
	}
	waitFor(t, "the probe", func() bool { return !d.guard.suspect.Load() })
	if d.guard.open.Load() {
		t.Fatal("one failure opened the breaker although the store answered the probe")
	}
	if dec := d.Attempt(ctx, login("192.0.2.1", "u")).Decision(); !dec.Allowed() {
		t.Fatalf("after the probe: %+v", dec)
	}
	d.Close()
	if fmt.Sprint(evs) != "[store_failed store_recovered]" {
		t.Fatalf("events %v", evs)
	}
}
