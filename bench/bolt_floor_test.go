package bench

import (
	"encoding/binary"
	"path/filepath"
	"sync/atomic"
	"testing"

	"go.etcd.io/bbolt"
)

// The bbolt floors: a read transaction (View), a write transaction with
// fsync (Update, serial) and coalesced writes (Batch, 32 goroutines per
// GOMAXPROCS).
func init() {
	floors = append(floors, floor{"bolt", "bolt", benchBoltFloor})
}

func benchBoltFloor(b *testing.B) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "floor.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	bucket := []byte("floor")
	if err := db.Update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucket(bucket)
		if err != nil {
			return err
		}
		return bk.Put([]byte("k"), []byte("v"))
	}); err != nil {
		b.Fatal(err)
	}
	var ctr atomic.Uint64
	put := func(tx *bbolt.Tx) error {
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], ctr.Add(1)%logins)
		return tx.Bucket(bucket).Put(k[:], k[:])
	}
	view := func() error {
		return db.View(func(tx *bbolt.Tx) error { _ = tx.Bucket(bucket).Get([]byte("k")); return nil })
	}
	b.Run("view/serial", func(b *testing.B) { serial(b, view) })
	b.Run("view/parallel", func(b *testing.B) { parallel(b, 0, view) })
	b.Run("update/serial", func(b *testing.B) { serial(b, func() error { return db.Update(put) }) })
	b.Run("batch/parallel", func(b *testing.B) { parallel(b, 32, func() error { return db.Batch(put) }) })
}
