package memory_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

func Example() {
	ctx := context.Background()
	s, err := memory.New(&memory.Options{MaxKeys: 100_000})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// Two failed logins from one address.
	for range 2 {
		n, _ := s.Incr(ctx, []string{"f:ip:192.0.2.1"}, 1, 5*time.Minute)
		fmt.Println("failures:", n[0])
	}
	// Block it.
	res, _ := backend.Block(ctx, s, backend.BlockRequest{
		BlockKey:    "b:ip:192.0.2.1",
		Value:       []byte("too many failures"),
		CounterKey:  "f:ip:192.0.2.1",
		LockoutsKey: "l:ip:192.0.2.1",
		Window:      24 * time.Hour,
		Durations:   []time.Duration{5 * time.Minute, time.Hour},
	})
	fmt.Println("lockouts:", res.Lockouts, "for", res.Duration)

	// The next check finds the block and counts nothing.
	r := &backend.Reservation{Blocks: []string{"b:ip:192.0.2.1"}, Counters: []string{"f:ip:192.0.2.1"}, TTL: 5 * time.Minute}
	_ = backend.Reserve(ctx, s, r)
	fmt.Printf("blocked by %s: %s\n", r.Blocks[r.Blocked], r.Block.Value)
	// Output:
	// failures: 1
	// failures: 2
	// lockouts: 1 for 5m0s
	// blocked by b:ip:192.0.2.1: too many failures
}

// A store at its bound evicts counters but never blocks.
func ExampleStore_Stats() {
	ctx := context.Background()
	s, _ := memory.New(&memory.Options{MaxKeys: 32})
	defer s.Close()
	_ = s.SetBlock(ctx, "b:alice", []byte("x"), time.Hour)
	for i := range 100 {
		_, _ = s.Incr(ctx, []string{fmt.Sprint("f:", i)}, 1, time.Hour)
	}
	st := s.Stats()
	e, _ := s.Get(ctx, []string{"b:alice"})
	fmt.Println("keys:", st.Keys, "evictions:", st.Evictions, "block kept:", e[0].Found)
	// Output: keys: 32 evictions: 69 block kept: true
}

func ExampleStore_Scan() {
	ctx := context.Background()
	b, err := backend.Open(ctx, "memory://?max_keys=1000")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	for _, u := range []string{"alice", "bob", "carol"} {
		_ = b.SetBlock(ctx, "b:u:"+u, []byte("locked"), time.Hour)
	}
	cursor, n := "", 0
	for {
		page, next, err := b.Scan(ctx, "b:u:", cursor, 2)
		if err != nil {
			panic(err)
		}
		n += len(page)
		if next == "" {
			break
		}
		cursor = next
	}
	fmt.Println("blocked users:", n)
	_, err = b.Incr(ctx, []string{"has space"}, 1, 0)
	fmt.Println(errors.Is(err, backend.ErrInvalid))
	// Output:
	// blocked users: 3
	// true
}
