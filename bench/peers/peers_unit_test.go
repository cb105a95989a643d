package peers

import (
	"testing"

	"github.com/go-defender/defender/backend/memory"
)

// TestPeersAllow runs every in-process check a few times: each is allowed
// (the limits are never reached) and none fails. It keeps the benchmark
// code compiled and correct in `make test` without starting a server.
func TestPeersAllow(t *testing.T) {
	st, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, p := range append(defenderPeers(newDefender(t, st)), memoryPeers(t)...) {
		t.Run(p.name, func(t *testing.T) {
			c := p.make()
			for i := range 3 {
				if err := c(i); err != nil {
					t.Fatalf("check %d: %v", i, err)
				}
			}
		})
	}
}
