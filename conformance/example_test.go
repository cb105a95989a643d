package conformance_test

import (
	"context"
	"os"
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
	clock := conformance.NewClock(time.Time{})
	conformance.RunHarness(t, conformance.Harness{
		Open: func(t *testing.T) backend.Backend {
			return newMyStore(clock.Now) // a new, empty store on the shared clock
		},
		Advance: clock.Advance,
		Now:     clock.Now,
	})
}

// benchmarkMyStore measures the login path over the store, with a read of
// one absent key as the store's floor (its cheapest round trip): run it
// with go test -run '^$' -bench . -benchmem.
func benchmarkMyStore(b *testing.B) {
	store := newMyStore(time.Now)
	b.Cleanup(func() { store.Close() })
	conformance.Bench(b, func(*testing.B) backend.Backend { return store }, &conformance.BenchOptions{
		Parallelism: 8, // goroutines per CPU: calls overlap their round trips
		Floor: &conformance.Floor{Setup: func(*testing.B) func(int) error {
			return func(int) error {
				_, err := store.Get(context.Background(), []string{"floor"})
				return err
			}
		}},
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

// newMyStore stands for your backend's constructor.
var newMyStore func(now func() time.Time) backend.Backend

// This example shows a third-party backend's tests calling the suite: Run in
// real time, RunHarness with a fake clock, and Bench. See testConformance,
// testConformanceFakeClock and benchmarkMyStore above.
func Example() {
	_, _, _ = testConformance, testConformanceFakeClock, benchmarkMyStore
}
