package bench

import (
	"testing"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

func init() {
	register(store{name: "memory", open: openMemory})
}

func openMemory(b *testing.B) backend.Backend {
	s, err := memory.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
