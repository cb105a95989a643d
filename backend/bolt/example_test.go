package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/bolt"
)

func Example() {
	dir, _ := os.MkdirTemp("", "defender")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := bolt.Open(filepath.Join(dir, "defender.db"), nil)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	r := &backend.Reservation{
		Blocks:   []string{"b:ip:192.0.2.1", "b:u:alice"},
		Counters: []string{"f:ip:192.0.2.1", "f:u:alice"},
		TTL:      5 * time.Minute,
	}
	for range 2 {
		_ = s.Reserve(ctx, r)
		fmt.Println("attempts:", r.Counts)
	}
	_, _ = s.Block(ctx, backend.BlockRequest{
		BlockKey: "b:u:alice", Value: []byte("locked"), CounterKey: "f:u:alice",
		LockoutsKey: "l:u:alice", Window: 24 * time.Hour, Durations: []time.Duration{time.Hour},
	})
	_ = s.Reserve(ctx, r)
	fmt.Printf("blocked by %s: %s\n", r.Blocks[r.Blocked], r.Block.Value)
	// Output:
	// attempts: [1 1]
	// attempts: [2 2]
	// blocked by b:u:alice: locked
}

// A file held by another Store is a clear error, not a hang.
func ExampleOpen_locked() {
	dir, _ := os.MkdirTemp("", "defender")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "defender.db")

	first, _ := bolt.Open(path, nil)
	defer first.Close()
	_, err := bolt.Open(path, &bolt.Options{Timeout: 100 * time.Millisecond})
	fmt.Println(errors.Is(err, bolt.ErrLocked))
	// Output: true
}

func ExampleStore_Sweep() {
	dir, _ := os.MkdirTemp("", "defender")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	s, _ := bolt.Open(filepath.Join(dir, "defender.db"), &bolt.Options{
		Now:           func() time.Time { return now },
		SweepInterval: -1, // no background sweeper: sweep by hand
	})
	defer s.Close()
	_, _ = s.Incr(ctx, []string{"a", "b"}, 1, time.Minute)
	_, _ = s.Incr(ctx, []string{"c"}, 1, 0)
	now = now.Add(time.Minute)
	n, _ := s.Sweep(ctx)
	fmt.Println("deleted:", n)
	// Output: deleted: 2
}

func ExampleStore_Scan() {
	dir, _ := os.MkdirTemp("", "defender")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	b, err := backend.Open(ctx, "bolt://"+filepath.Join(dir, "defender.db")+"?timeout=2s")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	for _, u := range []string{"alice", "bob", "carol"} {
		_ = b.SetBlock(ctx, "b:u:"+u, []byte("locked"), time.Hour)
	}
	for cursor := ""; ; {
		page, next, _ := b.Scan(ctx, "b:u:", cursor, 2)
		for _, e := range page {
			fmt.Println(e.Key, string(e.Value))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	// Output:
	// b:u:alice locked
	// b:u:bob locked
	// b:u:carol locked
}
