package defender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

// flaky wraps a real backend and fails every call while down is set, the
// way a store outage looks to the engine (backend.ErrUnavailable).
type flaky struct {
	backend.Backend
	down atomic.Bool
}

func (f *flaky) err() error {
	if f.down.Load() {
		return fmt.Errorf("flaky: %w", backend.ErrUnavailable)
	}
	return nil
}

func (f *flaky) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Backend.Incr(ctx, keys, delta, ttl)
}

func (f *flaky) SetBlock(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Backend.SetBlock(ctx, key, v, ttl)
}

func (f *flaky) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Backend.Get(ctx, keys)
}

func (f *flaky) Delete(ctx context.Context, keys ...string) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Backend.Delete(ctx, keys...)
}

func (f *flaky) Scan(ctx context.Context, p, c string, n int) ([]backend.Entry, string, error) {
	if err := f.err(); err != nil {
		return nil, "", err
	}
	return f.Backend.Scan(ctx, p, c, n)
}

type countingMetrics struct {
	attempts, blocks, unblocks, calls, callErrs, failModes atomic.Int64
}

func (m *countingMetrics) Attempt(string) { m.attempts.Add(1) }
func (m *countingMetrics) Block(Kind)     { m.blocks.Add(1) }
func (m *countingMetrics) Unblock(Kind)   { m.unblocks.Add(1) }
func (m *countingMetrics) StoreCall(op string, _ time.Duration, err error) {
	if op == "probe" {
		return // the prober's calls: as many as the outage lasts
	}
	m.calls.Add(1)
	if err != nil {
		m.callErrs.Add(1)
	}
}
func (m *countingMetrics) FailMode(FailMode) { m.failModes.Add(1) }

func newFlaky(t *testing.T, mode FailMode) (*Defender, *flaky, *countingMetrics, *[]Event) {
	t.Helper()
	clk := newClock()
	st, err := memory.New(&memory.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{Backend: st}
	cfg := DefaultConfig()
	cfg.FailMode = mode
	m := &countingMetrics{}
	evs := &[]Event{}
	d, err := New(f, cfg, &Options{Now: clk.Now, Metrics: m, Logger: slog.New(slog.DiscardHandler),
		Hooks: []Hook{func(ev Event) { *evs = append(*evs, ev) }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); st.Close() })
	return d, f, m, evs
}

func TestFailClosed(t *testing.T) {
	d, f, m, evs := newFlaky(t, FailClosed)
	f.down.Store(true)
	a := d.Attempt(ctx, login("192.0.2.1", "u"))
	dec := a.Decision()
	if dec.Verdict != Unavailable || dec.FailMode != FailClosed || !errors.Is(dec.Err, backend.ErrUnavailable) {
		t.Fatalf("closed: %+v", dec)
	}
	waitOpen(t, d) // the prober confirmed the failure
	if got := a.Failed(ctx); got.Verdict != Unavailable {
		t.Fatal("settling an unavailable attempt changed it")
	}
	if dec := d.Check(ctx, login("192.0.2.1", "u")); dec.Verdict != Unavailable {
		t.Fatalf("check: %+v", dec)
	}
	d.Attempt(ctx, login("192.0.2.1", "u"))
	f.down.Store(false)
	waitRecovered(t, d)
	if dec := d.Attempt(ctx, login("192.0.2.1", "u")).Decision(); dec.Verdict != Allow {
		t.Fatalf("after recovery: %+v", dec)
	}
	d.Close()
	kinds := []EventKind{}
	for _, ev := range *evs {
		kinds = append(kinds, ev.Kind)
	}
	if fmt.Sprint(kinds) != "[store_failed store_recovered]" {
		t.Fatalf("events %v: want one failure and one recovery", kinds)
	}
	// One call failed; the breaker answered the two others at once.
	if m.failModes.Load() != 3 || m.callErrs.Load() != 1 {
		t.Fatalf("metrics: failModes %d callErrs %d", m.failModes.Load(), m.callErrs.Load())
	}
}

func TestFailOpen(t *testing.T) {
	d, f, _, _ := newFlaky(t, FailOpen)
	f.down.Store(true)
	for i := 0; i < 10; i++ {
		a := d.Attempt(ctx, login("192.0.2.1", "u"))
		if dec := a.Decision(); dec.Verdict != Allow || dec.FailMode != FailOpen {
			t.Fatalf("open: %+v", dec)
		}
		if dec := a.Failed(ctx); dec.Verdict != Allow {
			t.Fatalf("open failure: %+v", dec)
		}
	}
	if dec := d.Check(ctx, login("192.0.2.1", "u")); dec.Verdict != Allow || dec.FailMode != FailOpen {
		t.Fatalf("check: %+v", dec)
	}
}

func TestFailLocal(t *testing.T) {
	d, f, _, _ := newFlaky(t, FailLocal)
	f.down.Store(true)
	l := login("192.0.2.1", "u")
	for i := 0; i < 3; i++ {
		a := d.Attempt(ctx, l)
		if dec := a.Decision(); dec.Verdict != Allow || dec.FailMode != FailLocal {
			t.Fatalf("local attempt %d: %+v", i, dec)
		}
		a.Failed(ctx)
	}
	a := d.Attempt(ctx, l)
	if dec := a.Failed(ctx); dec.Verdict != Locked || dec.FailMode != FailLocal {
		t.Fatalf("local store did not block: %+v", dec)
	}
	if dec := d.Check(ctx, l); dec.Verdict != Locked || dec.FailMode != FailLocal {
		t.Fatalf("local check: %+v", dec)
	}
	a = d.Attempt(ctx, login("192.0.2.2", "w"))
	a.Succeeded(ctx)
	f.down.Store(false)
	waitRecovered(t, d)
	// Back on the shared store, which never saw those failures.
	if dec := d.Check(ctx, l); dec.Verdict != Allow || dec.FailMode != "" {
		t.Fatalf("after recovery: %+v", dec)
	}
	// An admin unblock clears the local store too.
	if _, err := d.UnblockUsername(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	f.down.Store(true)
	if dec := d.Check(ctx, login("192.0.2.9", "u")); dec.Verdict != Allow {
		t.Fatalf("local block survived an admin unblock: %+v", dec)
	}
}

func TestSettleErrorsAreReported(t *testing.T) {
	d, f, _, _ := newFlaky(t, FailClosed)
	a := d.Attempt(ctx, login("192.0.2.1", "u"))
	f.down.Store(true)
	// The reset is made in the background: the success does not wait for
	// it, and it is made again once the store is back.
	if dec := a.Succeeded(ctx); dec.Verdict != Allow {
		t.Fatalf("success with store down: %+v", dec)
	}
	f.down.Store(false)
	waitRecovered(t, d)
	u := (&identity{kind: KindUsername, username: "u"}).key("defender", slotCounter)
	waitFor(t, "the reset", func() bool {
		es, _ := f.Backend.Get(ctx, []string{u})
		return !es[0].Found
	})
	for i := 0; i < 3; i++ {
		d.Attempt(ctx, login("192.0.2.3", "v")).Failed(ctx)
	}
	a = d.Attempt(ctx, login("192.0.2.3", "v"))
	f.down.Store(true)
	if dec := a.Failed(ctx); dec.Verdict != Locked || dec.Err == nil {
		t.Fatalf("block with store down: %+v (the attempt over the limit must still get the lockout)", dec)
	}
	if _, _, err := d.Blocks(ctx, "", 10); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("Blocks: %v", err)
	}
	if _, err := d.UnblockIP(ctx, "192.0.2.3"); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("Unblock: %v", err)
	}
}

func TestRefundWhenIPNotReset(t *testing.T) {
	clk := newClock()
	st, _ := memory.New(&memory.Options{Now: clk.Now})
	defer st.Close()
	f := &flaky{Backend: st}
	cfg := DefaultConfig()
	cfg.ResetIPOnSuccess = false
	d, _ := New(f, cfg, &Options{Logger: slog.New(slog.DiscardHandler)})
	defer d.Close()
	a := d.Attempt(ctx, login("192.0.2.1", "u"))
	f.down.Store(true)
	if dec := a.Succeeded(ctx); dec.Err == nil {
		t.Fatal("refund error not reported")
	}
}

// TestStoreEventsDoNotFlap: calls that finish out of order (one that began
// before an outage succeeds after another saw it fail; one that began before
// the recovery fails after it) give exactly one failure and one recovery.
func TestStoreEventsDoNotFlap(t *testing.T) {
	d, _, _, evs := newFlaky(t, FailClosed)
	errDown := fmt.Errorf("x: %w", backend.ErrUnavailable)
	now := time.Now()
	a := d.health.Load()                  // call A starts while healthy
	b := d.health.Load()                  // call B starts while healthy
	d.observe("reserve", now, b, errDown) // B fails: failure
	d.observe("reserve", now, a, nil)     // A (started before) succeeds: no recovery
	c := d.health.Load()                  // C starts during the outage
	e := d.health.Load()                  // E starts during the outage
	d.observe("reserve", now, c, nil)     // C succeeds: recovery
	d.observe("reserve", now, e, errDown) // E (started before the recovery) fails: ignored
	d.observe("reserve", now, a, errDown) // A's stale failure: ignored
	d.Close()
	kinds := []EventKind{}
	for _, ev := range *evs {
		kinds = append(kinds, ev.Kind)
	}
	if fmt.Sprint(kinds) != "[store_failed store_recovered]" {
		t.Fatalf("events %v: want one failure then one recovery", kinds)
	}
}

// TestBlockSettleSharesOneDeadline: a failure that blocks two identities on
// a slow store takes one StoreTimeout, not two.
func TestBlockSettleSharesOneDeadline(t *testing.T) {
	clk := newClock()
	st, _ := memory.New(&memory.Options{Now: clk.Now})
	defer st.Close()
	s := &slowBlock{Backend: st, delay: 80 * time.Millisecond}
	cfg := DefaultConfig()
	cfg.FailureLimit = 1
	cfg.StoreTimeout = 100 * time.Millisecond
	d, _ := New(s, cfg, &Options{Logger: slog.New(slog.DiscardHandler), Now: clk.Now})
	defer d.Close()
	l := login("192.0.2.1", "u")
	d.Attempt(ctx, l).Failed(ctx)
	a := d.Attempt(ctx, l)
	dec := a.Failed(ctx)
	if dec.Verdict != Locked {
		t.Fatalf("%+v", dec)
	}
	if s.calls.Load() != 2 || s.expired.Load() != 1 {
		t.Fatalf("block calls %d, past the shared deadline %d: want 2 calls, the second past the deadline", s.calls.Load(), s.expired.Load())
	}
}

// slowBlock delays SetBlock (the fallback Block's second step) and records
// whether the context's deadline had passed when the delay ended.
type slowBlock struct {
	backend.Backend
	delay          time.Duration
	calls, expired atomic.Int64
}

func (s *slowBlock) SetBlock(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.calls.Add(1)
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		s.expired.Add(1)
		return ctx.Err()
	}
	return s.Backend.SetBlock(ctx, key, v, ttl)
}

// TestSuccessOnNetworkStoreDeletes: on a store that is not in-process a
// success deletes the reset counters (one plain DEL) rather than refunding.
func TestSuccessOnNetworkStoreDeletes(t *testing.T) {
	d, f, _, _ := newFlaky(t, FailClosed)
	d.Attempt(ctx, login("192.0.2.1", "u")).Succeeded(ctx)
	d.Close() // makes the resets queued in the background
	es, _ := f.Backend.Get(ctx, []string{
		(&identity{kind: KindIP, ip: "192.0.2.1"}).key("defender", slotCounter),
		(&identity{kind: KindUsername, username: "u"}).key("defender", slotCounter),
	})
	for _, e := range es {
		if e.Found {
			t.Fatalf("%s left after a success: %+v", e.Key, e)
		}
	}
}

// waitRecovered waits until the breaker has seen the store answer again
// (its prober calls every probeEvery).
func waitRecovered(t *testing.T, d *Defender) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for d.guard.open.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the breaker did not close within 10s of the store coming back")
		}
		time.Sleep(time.Millisecond)
	}
}

// waitOpen waits until the prober has confirmed a failure and opened the
// breaker.
func waitOpen(t *testing.T, d *Defender) {
	t.Helper()
	waitFor(t, "the breaker to open", d.guard.open.Load)
}
