package bench

import (
	"testing"

	"github.com/go-defender/defender/conformance"
)

// pairedFloors maps a store name to its floor, registered by the files
// that know them.
var pairedFloors = map[string]conformance.Floor{}

// BenchmarkPaired runs conformance.BenchPaired on every store that has a
// floor: each operation serially, alternating batches of the operation and
// of the store's floor (mutex map, PING, memcached get) in the same loop,
// reporting their latencies (op-ns, floor-ns) and the ratio (x-floor). On a
// shared, noisy machine the ratio of interleaved batches is far more stable
// than the ratio of two benchmarks run seconds apart: both sides see the
// same load. BenchmarkPaired/<store>/<op>.
func BenchmarkPaired(b *testing.B) {
	for _, s := range stores() {
		f, ok := pairedFloors[s.name]
		if !ok {
			continue
		}
		b.Run(s.name, func(b *testing.B) { conformance.BenchPaired(b, s.open, f) })
	}
}

func init() { pairedFloors["memory"] = conformance.MutexMapFloor() }
