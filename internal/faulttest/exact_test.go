package faulttest

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/defender"
)

// TestExactness sends 1000 concurrent failed logins (one goroutine each)
// for one username from rotating IPs, and for one IP with rotating
// usernames, on every backend: with the normal limit exactly limit+1
// passwords are verified and exactly one block event fires; with a limit
// too high to block, the counter holds exactly 1000.
func TestExactness(t *testing.T) {
	const n = 1000
	type scenario struct {
		name    string
		login   func(i int) defender.Login
		counter string // the shared identity's counter key suffix
		event   defender.EventKind
		limit   int
	}
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	scenarios := []scenario{
		{"username/limit", func(i int) defender.Login { return defender.Login{IP: ip(i), Username: "victim"} }, "u:victim", defender.EventUsernameBlocked, 3},
		{"ip/limit", func(i int) defender.Login {
			return defender.Login{IP: netip.MustParseAddr("192.0.2.66"), Username: fmt.Sprintf("user%d", i)}
		}, "i:192.0.2.66", defender.EventIPBlocked, 3},
		{"username/count", func(i int) defender.Login { return defender.Login{IP: ip(i), Username: "victim"} }, "u:victim", "", 1 << 20},
		{"ip/count", func(i int) defender.Login {
			return defender.Login{IP: netip.MustParseAddr("192.0.2.66"), Username: fmt.Sprintf("user%d", i)}
		}, "i:192.0.2.66", "", 1 << 20},
	}
	for _, bk := range allKits {
		t.Run(bk.name, func(t *testing.T) {
			k := bk.make(t)
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					prefix := uniquePrefix()
					cfg := defender.DefaultConfig()
					cfg.CachePrefix = prefix
					cfg.FailureLimit = sc.limit
					cfg.StoreTimeout = 20 * time.Second // exactness, not deadlines
					cfg.StoreAccessAttempts = false
					d, rec := newDefender(t, k.direct, cfg)
					var verified, locked, unavailable atomic.Int64
					start := make(chan struct{})
					var wg sync.WaitGroup
					for i := 0; i < n; i++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							<-start
							a := d.Attempt(ctxBG, sc.login(i))
							switch dec := a.Decision(); dec.Verdict {
							case defender.Allow:
								verified.Add(1)
								a.Failed(ctxBG)
							case defender.Locked:
								locked.Add(1)
							default:
								unavailable.Add(1)
							}
						}()
					}
					close(start)
					wg.Wait()
					if unavailable.Load() != 0 {
						t.Fatalf("%d attempts unavailable", unavailable.Load())
					}
					d.Close()
					if sc.event != "" {
						if v := verified.Load(); v != int64(sc.limit)+1 {
							t.Errorf("%d passwords verified, want exactly limit+1 = %d", v, sc.limit+1)
						}
						if got := rec.count(sc.event); got != 1 {
							t.Errorf("%d %s events, want exactly 1", got, sc.event)
						}
						if blocks := rec.blocks.Load(); blocks != 1 {
							t.Errorf("%d blocks counted, want 1", blocks)
						}
					} else {
						if v := verified.Load(); v != n {
							t.Errorf("%d verified, want %d", v, n)
						}
						if got := readCounter(t, k.direct, counterKey(prefix, sc.counter)); got != n {
							t.Errorf("counter %d, want exactly %d", got, n)
						}
						if blocks := rec.blocks.Load(); blocks != 0 {
							t.Errorf("%d blocks, want none", blocks)
						}
					}
					t.Logf("%s %s: %d verified, %d locked", k.name, sc.name, verified.Load(), locked.Load())
				})
			}
		})
	}
}
