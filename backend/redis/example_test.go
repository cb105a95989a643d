package redis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	defenderredis "github.com/go-defender/defender/backend/redis"
	"github.com/go-defender/defender/internal/testserver"
)

// exampleAddr is a redis-server that TestMain starts for the examples.
var exampleAddr string

func TestMain(m *testing.M) {
	addr, stop, err := testserver.StartRedisProcess()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exampleAddr = addr
	code := m.Run()
	stop()
	os.Exit(code)
}

// The application's own client, shared with the store. ContextTimeoutEnabled
// lets the context's deadline bound every store call.
func ExampleNew() {
	client := goredis.NewClient(&goredis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer client.Close()
	store := defenderredis.New(client, &defenderredis.Options{Prefix: "myapp:"})
	defer store.Close() // leaves client open

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := backend.Reservation{
		Blocks:   []string{"defender:b:{u:alice}"},
		Counters: []string{"defender:f:{u:alice}"},
		TTL:      5 * time.Minute,
	}
	if err := store.Reserve(ctx, &r); errors.Is(err, backend.ErrUnavailable) {
		fmt.Println("store down: apply the fail mode")
	}
}

// A cluster client: keys of different hash slots go out as one script per
// slot, in one pipeline.
func ExampleNew_cluster() {
	client := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:                 []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"},
		ContextTimeoutEnabled: true,
	})
	store := defenderredis.New(client, nil)
	defer store.Close()
}

// Opening from a URL, as DEFENDER_REDIS_URL does. The store owns the client.
// Errors never show the password.
func ExampleOpen() {
	_, err := defenderredis.Open(context.Background(), "redis://alice:s3cr%40t@localhost:6379/0?prefix=myapp:&colour=blue")
	fmt.Println(errors.Is(err, backend.ErrInvalidURL))
	fmt.Println(err)
	// Output:
	// true
	// backend: invalid store URL "redis://alice:xxxxx@localhost:6379/0?prefix=myapp:&colour=blue": redis: unexpected option: colour
}

// The sentinel form: the master name is the first path segment.
func ExampleOpen_sentinel() {
	store, err := defenderredis.Open(context.Background(), "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/0?dial_timeout=100ms")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	fmt.Println("opened")
	// Output: opened
}

// The hash tag decides a key's cluster slot: all keys of one identity share
// a slot, so one script can serve them.
func ExampleSlot() {
	for _, k := range []string{"defender:f:{u:alice}", "defender:b:{u:alice}", "defender:f:{i:192.0.2.1}"} {
		fmt.Println(defenderredis.HashTag(k), defenderredis.Slot(k))
	}
	// Output:
	// u:alice 5797
	// u:alice 5797
	// i:192.0.2.1 4263
}

// Change notifications between two processes sharing one Redis (here two
// clients): each subscribes; an unblock in either announces the block's key,
// and both drop their cached copy. onReset also says when the subscription
// is live: announcements made before it may have been missed.
func ExampleStore_Subscribe() {
	ctx := context.Background()
	open := func() *defenderredis.Store {
		store, err := defenderredis.Open(ctx, "redis://"+exampleAddr+"?prefix=example-notify:")
		if err != nil {
			panic(err)
		}
		return store
	}
	a, b := open(), open() // each owns its client, as two processes would
	defer a.Close()
	defer b.Close()

	keys := make(chan string, 16)
	live := make(chan struct{}, 1)
	stop, err := b.Subscribe(
		func(key string) { keys <- key }, // drop the cached block of key
		func() { // drop every cached block
			select {
			case live <- struct{}{}:
			default:
			}
		})
	if err != nil {
		panic(err)
	}
	defer stop()
	<-live

	// Process a unblocks alice (Delete), then announces it.
	if err := a.Notify(ctx, "defender:b:{u:alice}"); err != nil {
		fmt.Println("not announced; the others see it when their cache expires:", err)
	}
	fmt.Println(<-keys)
	// Output: defender:b:{u:alice}
}
