package conformance_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/conformance"
)

// In a backend's own _test.go file, name these functions TestConformance
// and TestConformanceFakeClock so that go test runs them.

// testConformance runs the suite in real time against a store opened by
// URL (for example "redis://localhost:6379/0" with your backend's package
// imported for its scheme). Each subtest needs a store that looks empty, so
// the store is flushed here (or give each one its own key prefix).
func testConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) backend.Backend {
		b, err := backend.Open(context.Background(), os.Getenv("MYSTORE_URL"))
		if err != nil {
			t.Fatal(err)
		}
		flush(t, b)
		return b // the suite closes it when the subtest ends
	})
}

// testConformanceFakeClock runs the same checks instantly against a store
// that takes its clock as an option, as backend/memory and backend/bolt do.
func testConformanceFakeClock(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	conformance.RunHarness(t, conformance.Harness{
		Open: func(t *testing.T) backend.Backend {
			return newMyStore(clock.Now) // a new, empty store on the shared clock
		},
		Advance: clock.Advance,
		Now:     clock.Now,
	})
}

// flush deletes every key of b.
func flush(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	for cursor := ""; ; {
		es, next, err := b.Scan(ctx, "", cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if err := b.Delete(ctx, e.Key); err != nil {
				t.Fatal(err)
			}
		}
		if next == "" {
			return
		}
		cursor = next
	}
}

// fakeClock is a clock that moves only when told to.
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
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newMyStore stands for your backend's constructor.
var newMyStore func(now func() time.Time) backend.Backend

// This example shows a third-party backend's tests calling the suite: Run in
// real time, RunHarness with a fake clock. See testConformance and
// testConformanceFakeClock above.
func Example() {
	_, _ = testConformance, testConformanceFakeClock
}
