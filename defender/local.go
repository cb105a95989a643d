package defender

import (
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

// newLocalStore makes FailLocal's in-process fallback store.
func newLocalStore(now func() time.Time) (backend.Backend, error) {
	return memory.New(&memory.Options{Now: now})
}
