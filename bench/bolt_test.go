package bench

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/bolt"
)

func init() {
	// 32 goroutines per GOMAXPROCS: a flood is many concurrent requests,
	// and their writes share each commit (group commit).
	register(store{name: "bolt", open: openBolt, parallelism: 32, footprint: boltFootprint})
}

// boltPaths maps an open bolt store to its file.
var boltPaths sync.Map

// openBolt opens a bolt store with fsync on every commit (the default) in
// a fresh file.
func openBolt(b *testing.B) backend.Backend {
	path := filepath.Join(b.TempDir(), "defender.db")
	s, err := bolt.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	boltPaths.Store(s, path)
	b.Cleanup(func() { s.Close(); boltPaths.Delete(s) })
	return s
}

// boltFootprint is the file's size and the number of live keys.
func boltFootprint(b *testing.B, st backend.Backend) (float64, float64) {
	path, _ := boltPaths.Load(st)
	fi, err := os.Stat(path.(string))
	if err != nil {
		b.Fatal(err)
	}
	keys := 0
	cursor := ""
	for {
		es, next, err := st.Scan(ctx, "", cursor, 10000)
		if err != nil {
			b.Fatal(err)
		}
		keys += len(es)
		if next == "" {
			break
		}
		cursor = next
	}
	return float64(fi.Size()), float64(keys)
}
