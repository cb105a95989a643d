package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/conformance"
	"github.com/go-defender/defender/examples/sqlite"
)

// open returns a new, empty store in a file of t's temporary directory
// on the clock now; the suite closes it.
func open(t testing.TB, now func() time.Time) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "defender.db"), &sqlite.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the whole suite in real time (about half a minute
// of TTL waits).
func TestConformance(t *testing.T) {
	t.Parallel()
	conformance.Run(t, func(t *testing.T) backend.Backend { return open(t, nil) })
}

// TestConformanceFakeClock runs the same checks instantly, on a fake clock
// that the store takes as Options.Now.
func TestConformanceFakeClock(t *testing.T) {
	t.Parallel()
	clk := conformance.NewClock(time.Time{})
	conformance.RunHarness(t, conformance.Harness{
		Open:    func(t *testing.T) backend.Backend { return open(t, clk.Now) },
		Advance: clk.Advance,
		Now:     clk.Now,
	})
}

// ping is the store's own cheapest round trip, the floor of x-floor.
func ping(b *testing.B, s *sqlite.Store) conformance.Floor {
	return conformance.Floor{Setup: func(b *testing.B) func(int) error {
		return func(int) error {
			_, err := s.Get(context.Background(), []string{"floor"})
			return err
		}
	}}
}

// BenchmarkSQLite measures the login path on the store: Check, Failure,
// Success and Attempt, serial and parallel, the floor alone, and each
// operation paired with the floor (x-floor).
func BenchmarkSQLite(b *testing.B) {
	s := open(b, nil)
	b.Cleanup(func() { s.Close() })
	conformance.Bench(b, func(*testing.B) backend.Backend { return s }, &conformance.BenchOptions{
		Parallelism: 4,
		Floor:       ptr(ping(b, s)),
	})
}

func ptr[T any](v T) *T { return &v }

// TestBenchRuns runs the benchmark once, briefly, so that `go test` (and
// so `make test`) shows the harness works on this backend.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r := testing.Benchmark(func(b *testing.B) {
		s := open(b, nil)
		b.Cleanup(func() { s.Close() })
		b.Run("all", func(b *testing.B) {
			conformance.Bench(b, func(*testing.B) backend.Backend { return s }, &conformance.BenchOptions{Floor: ptr(ping(b, s))})
		})
	})
	if r.N == 0 {
		t.Fatalf("the benchmark did not run: %+v", r)
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "url.db")
	b, err := backend.Open(ctx, "sqlite://"+path+"?busy_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Incr(ctx, []string{"k"}, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]string{
		"sqlite://host/x.db":                   "want sqlite:///path/to/file.db",
		"sqlite://" + path + "?busy_timeout=x": "parameter busy_timeout=",
		"sqlite://" + path + "?cache=1":        "unknown query parameter(s) cache",
	} {
		if _, err := backend.Open(ctx, raw); !errors.Is(err, backend.ErrInvalidURL) || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want ErrInvalidURL holding %q", raw, err, want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := sqlite.Open(ctx, "", nil); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("Open(\"\") = %v, want ErrInvalid", err)
	}
	if _, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"), &sqlite.Options{BusyTimeout: -1}); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("Open with a negative BusyTimeout = %v, want ErrInvalid", err)
	}
	if _, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "missing", "dir", "x.db"), nil); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Open in a missing directory = %v, want ErrUnavailable", err)
	}
}

func TestScanCursor(t *testing.T) {
	s := open(t, nil)
	defer s.Close()
	if _, _, err := s.Scan(context.Background(), "a:", "b:1", 10); !errors.Is(err, backend.ErrInvalid) {
		t.Errorf("Scan with a cursor outside the prefix = %v, want ErrInvalid", err)
	}
}
