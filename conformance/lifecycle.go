package conformance

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-defender/defender/backend"
)

// op is one call of a Backend method (or of the package functions that use
// the optional interfaces) with valid arguments.
type op struct {
	name string
	call func(ctx context.Context, b backend.Backend) error
}

func ops() []op {
	return []op{
		{"Incr", func(ctx context.Context, b backend.Backend) error {
			_, err := b.Incr(ctx, []string{"l:count", "l:other"}, 1, hour)
			return err
		}},
		{"SetBlock", func(ctx context.Context, b backend.Backend) error {
			return b.SetBlock(ctx, "l:block", []byte("v"), hour)
		}},
		{"Get", func(ctx context.Context, b backend.Backend) error {
			_, err := b.Get(ctx, []string{"l:count", "l:block"})
			return err
		}},
		{"Delete", func(ctx context.Context, b backend.Backend) error {
			return b.Delete(ctx, "l:count", "l:absent")
		}},
		{"Scan", func(ctx context.Context, b backend.Backend) error {
			_, _, err := b.Scan(ctx, "l:", "", 10)
			return err
		}},
		{"Reserve", func(ctx context.Context, b backend.Backend) error {
			return backend.Reserve(ctx, b, &backend.Reservation{
				Blocks: []string{"l:block2"}, Counters: []string{"l:count"}, TTL: hour,
			})
		}},
		{"Block", func(ctx context.Context, b backend.Backend) error {
			_, err := backend.Block(ctx, b, backend.BlockRequest{
				BlockKey: "l:block", Value: []byte("v"), CounterKey: "l:count",
				LockoutsKey: "l:lockouts", Window: hour, Durations: []time.Duration{hour},
			})
			return err
		}},
	}
}

// populate writes the keys the ops read.
func populate(t tb, b backend.Backend) {
	t.Helper()
	incr(t, b, []string{"l:count", "l:other"}, 1, hour)
	setBlock(t, b, "l:block", []byte("v"), hour)
}

func (s *suite) cancelChecks() []check {
	contexts := []struct {
		name string
		make func(t tb) context.Context
		want []error
	}{
		{"Cancelled", func(tb) context.Context {
			c, cancel := context.WithCancel(context.Background())
			cancel()
			return c
		}, []error{context.Canceled, backend.ErrUnavailable}},
		{"DeadlineExceeded", func(t tb) context.Context {
			c, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return c
		}, []error{context.DeadlineExceeded, backend.ErrUnavailable}},
	}
	var checks []check
	for _, cc := range contexts {
		checks = append(checks, check{cc.name, func(t tb) {
			// A call with a context that has ended returns an error that
			// wraps ctx.Err() or ErrUnavailable, even when the store could
			// have answered at once; the backend stays usable.
			b := s.open(t)
			populate(t, b)
			for _, o := range ops() {
				t.Run(o.name, func(t tb) {
					err := o.call(cc.make(t), b)
					if !isErr(err, cc.want...) {
						t.Errorf("%s with an ended context: err = %v, want %s", o.name, err, errNames(cc.want...))
					}
				})
			}
			t.Run("StillUsable", func(t tb) {
				for _, o := range ops() {
					if err := o.call(ctx(t), b); err != nil {
						t.Errorf("%s after calls with ended contexts: %v", o.name, err)
					}
				}
			})
		}})
	}
	return checks
}

func (s *suite) closedChecks() []check {
	return []check{
		{"AfterClose", func(t tb) {
			// Every call after Close returns ErrClosed.
			b := s.open(t)
			populate(t, b)
			if err := b.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for _, o := range ops() {
				t.Run(o.name, func(t tb) {
					if err := o.call(ctx(t), b); !isErr(err, backend.ErrClosed) {
						t.Errorf("%s after Close: err = %v, want %v", o.name, err, backend.ErrClosed)
					}
				})
			}
		}},
		{"CloseWhileBusy", s.closeWhileBusy},
		{"CloseTwice", func(t tb) {
			// Close is idempotent: the second call returns nil too.
			b := s.open(t)
			if err := b.Close(); err != nil {
				t.Fatalf("first Close: %v", err)
			}
			if err := b.Close(); err != nil {
				t.Errorf("second Close: %v, want nil (Close is idempotent)", err)
			}
		}},
		{"CloseUnused", func(t tb) {
			// A backend closed right after Open, never used, closes cleanly
			// (checked by the suite's own Close at the end of the subtest).
			s.open(t)
		}},
	}
}

// busyWorkers is the number of goroutines calling the backend while
// CloseWhileBusy closes it; busyCalls is how many calls must have succeeded
// before it does.
const busyWorkers, busyCalls = 8, 64

// closeWhileBusy closes a backend while goroutines call it. A call that
// runs while Close runs either completes normally or fails with ErrClosed:
// never another error, a panic or a hang; Close returns nil; a call that
// starts after Close has returned fails with ErrClosed.
func (s *suite) closeWhileBusy(t tb) {
	b := s.open(t)
	populate(t, b)
	c := ctx(t)
	all := ops()
	var succeeded, running atomic.Int64
	var closed atomic.Bool
	var wg sync.WaitGroup
	for i := range busyWorkers {
		wg.Add(1)
		running.Add(1)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			for n := 0; ; n++ {
				o := all[(i+n)%len(all)]
				after := closed.Load()
				err := o.call(c, b)
				switch {
				case err == nil && after:
					t.Errorf("%s started after Close returned: err = nil, want %v", o.name, backend.ErrClosed)
					return
				case err == nil:
					succeeded.Add(1)
				case isErr(err, backend.ErrClosed):
					return
				default:
					t.Errorf("%s while Close runs: err = %v, want nil or an error wrapping %v", o.name, err, backend.ErrClosed)
					return
				}
			}
		}()
	}
	for succeeded.Load() < busyCalls && running.Load() > 0 {
		runtime.Gosched()
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close while %d goroutines call the backend: %v, want nil", busyWorkers, err)
	}
	closed.Store(true)
	wg.Wait()
}
