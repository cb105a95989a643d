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

// TestStoreEventsOnePairPerOutage: one outage of the store under
// concurrent logins must fire store_failed once and store_recovered once
// (docs/behaviour.md: hooks fire on real transitions only).
//
// This found a bug, now fixed: the engine judged health by the order in
// which concurrent calls finished, so one outage under 8 workers fired 3-6
// pairs; it now judges each call by the health it saw when it started.
func TestStoreEventsOnePairPerOutage(t *testing.T) {
	k := redisKit(t)
	d, rec := newDefender(t, k.store, closedConfig(uniquePrefix()))
	warmUp(t, d)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				a := d.Attempt(ctxBG, defender.Login{IP: netip.MustParseAddr(fmt.Sprintf("10.7.%d.%d", g, i%250)), Username: fmt.Sprintf("u%d", i%100)})
				a.Succeeded(ctxBG)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	k.cut()
	time.Sleep(300 * time.Millisecond)
	k.restore()
	back := time.Now()
	for rec.count(defender.EventStoreRecovered) == 0 { // the breaker's prober notices
		if time.Since(back) > 5*time.Second {
			break
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("recovery noticed %v after the store came back", time.Since(back).Round(time.Millisecond))
	time.Sleep(100 * time.Millisecond) // logins go on after the recovery
	stop.Store(true)
	wg.Wait()
	d.Close()
	if f, r := rec.count(defender.EventStoreFailed), rec.count(defender.EventStoreRecovered); f != 1 || r != 1 {
		t.Errorf("one outage fired %d store_failed and %d store_recovered events, want 1 and 1", f, r)
	}
}
