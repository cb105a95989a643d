package bench

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/conformance"
	"github.com/go-defender/defender/defender"
)

var ctx = context.Background()

// netParallelism is the b.SetParallelism of the benchmarks that wait on a
// network round trip (and of their floors): GOMAXPROCS*netParallelism
// goroutines keep the server busy while others wait.
const netParallelism = 8

// logins is the number of distinct keys the floors rotate over.
const logins = 4096

// a store under benchmark.
type store struct {
	name string
	// open returns a fresh backend, closed when b ends.
	open func(b *testing.B) backend.Backend
	// parallelism for RunParallel (0: the default, GOMAXPROCS goroutines).
	parallelism int
	// footprint, when set, measures the store for BenchmarkKeyMemory.
	footprint footprint
	// traffic, when set, returns the server's counters so far (metric
	// unit -> total), reported per operation by conformance.Bench.
	traffic func(b *testing.B) map[string]float64
}

// registered holds every backend, from the init functions of the files
// that know them (one per backend); stores returns them in report order.
var registered []store

func register(s store) { registered = append(registered, s) }

// order is the order of the report; unknown names go last.
var order = []string{"memory", "bolt", "redis", "redis-cluster", "memcached"}

func stores() []store {
	out := make([]store, 0, len(registered))
	for _, n := range order {
		for _, s := range registered {
			if s.name == n {
				out = append(out, s)
			}
		}
	}
	return out
}

// seq makes store prefixes and key sets distinct within the process.
var seq atomic.Int64

// quiet discards the engine's log lines (one per block).
var quiet = &defender.Options{Logger: slog.New(slog.DiscardHandler)}

// BenchmarkBackend runs conformance.Bench, the exported benchmark of the
// login path, on every backend: BenchmarkBackend/<store>/<op>/<serial|parallel>.
func BenchmarkBackend(b *testing.B) {
	for _, s := range stores() {
		b.Run(s.name, func(b *testing.B) {
			conformance.Bench(b, s.open, &conformance.BenchOptions{Parallelism: s.parallelism, Traffic: s.traffic})
		})
	}
}
