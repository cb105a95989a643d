package memcached_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memcached"
	"github.com/go-defender/defender/internal/testserver"
)

// exampleAddr is a memcached server that TestMain starts for the examples.
var exampleAddr string

func TestMain(m *testing.M) {
	addr, stop, err := testserver.StartMemcachedProcess()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exampleAddr = addr
	code := m.Run()
	stop()
	os.Exit(code)
}

// A Store on a client you configure yourself.
func ExampleNew() {
	client := memcache.New(exampleAddr) // several servers: memcache.New(a, b, c)
	client.Timeout = 100 * time.Millisecond
	client.MaxIdleConns = 64
	store, err := memcached.New(client, &memcached.Options{Prefix: "example-new:"})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := store.Incr(ctx, []string{"failures:alice"}, 1, 5*time.Minute); err != nil {
			panic(err)
		}
	}
	es, err := store.Get(ctx, []string{"failures:alice"})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s failures, expiring in %v\n", es[0].Value, es[0].TTL)
	// Output: 3 failures, expiring in 5m0s
}

// Opening a Store from a URL, as the CLI and DEFENDER_STORE_URL do, and
// listing blocks as the admin does.
func ExampleOpen() {
	ctx := context.Background()
	b, err := backend.Open(ctx, "memcached://"+exampleAddr+"?prefix=example-open:&timeout=100ms")
	if err != nil {
		panic(err)
	}
	defer b.Close()

	_ = b.SetBlock(ctx, "block:ip:192.0.2.1", []byte("ip"), time.Hour)
	_ = b.SetBlock(ctx, "block:user:bob", []byte("user"), 0) // permanent
	entries, _, err := b.Scan(ctx, "block:", "", 100)
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		fmt.Printf("%s %s ttl=%v\n", e.Key, e.Value, e.TTL)
	}
	// Output:
	// block:ip:192.0.2.1 ip ttl=1h0m0s
	// block:user:bob user ttl=0s
}

// The login check: look at the blocks and count the attempt, in two round
// trips.
func ExampleStore_Reserve() {
	store, err := memcached.New(memcache.New(exampleAddr), &memcached.Options{Prefix: "example-reserve:"})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	ctx := context.Background()
	r := backend.Reservation{
		Blocks:   []string{"block:ip:192.0.2.7", "block:user:carol"},
		Counters: []string{"count:ip:192.0.2.7", "count:user:carol"},
		TTL:      5 * time.Minute,
	}
	for i := 0; i < 2; i++ {
		if err := store.Reserve(ctx, &r); err != nil {
			panic(err)
		}
		fmt.Println("blocked:", r.Blocked >= 0, "counts:", r.Counts)
	}
	_ = store.SetBlock(ctx, "block:user:carol", []byte("user"), time.Minute)
	_ = store.Reserve(ctx, &r)
	fmt.Println("blocked by:", r.Blocks[r.Blocked])
	// Output:
	// blocked: false counts: [1 1]
	// blocked: false counts: [2 2]
	// blocked by: block:user:carol
}
