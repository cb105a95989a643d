package memory_test

// The conformance suite imports the defender engine, which imports this
// package: the suite runs from this external test package.

import (
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/conformance"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openStore(t *testing.T, o *memory.Options) backend.Backend {
	s, err := memory.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s // the suite closes it
}

// TestConformance runs the suite in real time (the store's own clock).
func TestConformance(t *testing.T) {
	t.Parallel() // mostly waiting: overlap with the other tests
	if testing.Short() {
		t.Skip("real-time TTL checks sleep about half a minute")
	}
	conformance.Run(t, func(t *testing.T) backend.Backend { return openStore(t, nil) })
}

// TestConformanceFakeClock runs the suite on a fake clock, and with a small
// bound so that the suite's keys also exercise the sharded layout.
func TestConformanceFakeClock(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	conformance.RunHarness(t, conformance.Harness{
		Open: func(t *testing.T) backend.Backend {
			return openStore(t, &memory.Options{Now: clock.Now, MaxKeys: 1 << 16})
		},
		Advance: clock.Advance,
		Now:     clock.Now,
	})
}
