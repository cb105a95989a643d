package conformance

import (
	"sync"
	"time"
)

// Clock is a fake clock that moves only when told to, for RunHarness: give
// its Now to the backends that Harness.Open returns (as their injected
// clock) and set Harness.Advance and Harness.Now to its methods. It is safe
// for concurrent use.
//
//	clk := conformance.NewClock(time.Time{})
//	conformance.RunHarness(t, conformance.Harness{
//		Open:    func(t *testing.T) backend.Backend { return mystore.New(&mystore.Options{Now: clk.Now}) },
//		Advance: clk.Advance,
//		Now:     clk.Now,
//	})
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads start until it is advanced. A zero
// start means 2026-01-01 00:00:00 UTC, a fixed time, so that runs repeat.
func NewClock(start time.Time) *Clock {
	if start.IsZero() {
		start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return &Clock{now: start}
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d. A negative d is ignored: the
// clock never goes back.
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
