package bench

import (
	"testing"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

func init() {
	register(store{name: "memory", open: openMemory, footprint: heapFootprint(memKeys)})
}

// openMemory opens a memory store bounded at 8M keys, more than any
// benchmark here writes (BenchmarkKeyMemory/memory-bound tests the bound).
func openMemory(b *testing.B) backend.Backend {
	s, err := memory.New(&memory.Options{MaxKeys: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
