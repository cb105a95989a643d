package memory_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

// attack is an attacker's strategy against a victim's failure counter in a
// memory store with a small bound: every request is one login attempt as
// the engine makes it (two block keys, then two counters: the address's
// and the username's), with identities the attacker makes up.
type attack struct {
	name string
	// junkCount is how many requests each made-up identity gets, so its
	// two counters reach that count.
	junkCount int
	// blocksFirst makes the attacker first fill the store with blocks
	// (limit+1 = 4 requests per blocked identity; each block also pins a
	// lockout count) until the store has refused 50, then flood.
	blocksFirst bool
}

const (
	attackMaxKeys = 1000
	// attackCap bounds the requests an attack may spend: 50 times the
	// bound.
	attackCap = 50 * attackMaxKeys
	limit     = 3
)

// eraseCost runs a against a victim counter of count c and returns the
// attacker's requests until the victim's count is lost (evicted, or lower
// than c), or -1 when the victim survives attackCap requests. It also
// returns how many requests of legitimate users (a fresh identity every
// 10th attacker request) the store refused.
func eraseCost(t *testing.T, a attack, c int) (cost, refusedUsers int) {
	t.Helper()
	ctx := context.Background()
	s, err := memory.New(&memory.Options{MaxKeys: attackMaxKeys, SweepInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const victim = "defender:f:u:victim"
	login := func(ip, user string) error {
		r := &backend.Reservation{
			Blocks:   []string{"defender:b:ip:" + ip, "defender:b:u:" + user},
			Counters: []string{"defender:f:ip:" + ip, "defender:f:u:" + user},
			TTL:      time.Hour,
		}
		return s.Reserve(ctx, r)
	}
	for i := range c {
		if err := login("198.51.100."+strconv.Itoa(i), "victim"); err != nil {
			t.Fatal(err)
		}
	}
	alive := func() bool {
		es, err := s.Get(ctx, []string{victim})
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(string(es[0].Value))
		return es[0].Found && n >= c
	}
	id := 0
	if a.blocksFirst {
		for refusals := 0; refusals < 50 && cost < attackCap; {
			id++
			u := "blk" + strconv.Itoa(id)
			for range limit + 1 {
				cost++
				_ = login("203.0.113.1", u) // the address is the attacker's, its counter saturates
			}
			_, err := s.Block(ctx, backend.BlockRequest{
				BlockKey: "defender:b:u:" + u, Value: []byte("x"), CounterKey: "defender:f:u:" + u,
				LockoutsKey: "defender:l:u:" + u, Window: time.Hour, Durations: []time.Duration{time.Hour},
			})
			if err != nil {
				refusals++
			}
		}
	}
	for cost < attackCap {
		if !alive() {
			return cost, refusedUsers
		}
		id++
		ip, u := "a"+strconv.Itoa(id), "u"+strconv.Itoa(id)
		for range a.junkCount {
			cost++
			_ = login(ip, u)
			if cost%10 == 0 {
				if err := login("user"+strconv.Itoa(cost), "user"+strconv.Itoa(cost)); err != nil {
					refusedUsers++
				}
			}
		}
	}
	if !alive() {
		return cost, refusedUsers
	}
	return -1, refusedUsers
}

var attacks = []attack{
	{name: "junk at count 1", junkCount: 1},
	{name: "junk at count 2", junkCount: 2},
	{name: "junk at count 3", junkCount: 3},
	{name: "blocks, then junk at count 1", junkCount: 1, blocksFirst: true},
	{name: "blocks, then junk at count 3", junkCount: 3, blocksFirst: true},
}

// TestAttackerCost measures how many requests an attacker needs to make a
// store of 1000 keys forget a victim's failure count c, for each strategy,
// and asserts the eviction policy's guarantees:
//
//   - a victim with c >= 2 is never evicted by junk of a lower count,
//     however much of it;
//   - junk at the victim's count costs at least c requests per counter
//     slot: more than c·MaxKeys/4 requests (the counters' reserved share);
//   - a store full of blocks still counts every new user (no ErrFull).
//
// The logged table is the measurement quoted in the package documentation.
func TestAttackerCost(t *testing.T) {
	for _, a := range attacks {
		for c := 1; c <= 3; c++ {
			cost, refused := eraseCost(t, a, c)
			t.Logf("%-30s victim count %d: erased after %6d requests (-1: survived %d), %d legitimate logins refused",
				a.name, c, cost, attackCap, refused)
			if refused != 0 {
				t.Errorf("%s: %d legitimate logins refused", a.name, refused)
			}
			switch {
			case a.junkCount < c && cost != -1:
				t.Errorf("%s: a victim at count %d was erased by junk at a lower count", a.name, c)
			case a.junkCount >= c && cost != -1 && cost < c*attackMaxKeys/4:
				t.Errorf("%s: a victim at count %d erased after %d requests, want >= %d", a.name, c, cost, c*attackMaxKeys/4)
			}
		}
	}
}
