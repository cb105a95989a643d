package faulttest

import (
	"net/netip"
	"testing"
	"time"

	"github.com/go-defender/defender/defender"
)

// TestCallDeadlineAcrossRoundTrips adds 70ms to every reply — under the
// Memcached client's 200ms network timeout, so no single round trip fails —
// and measures each engine call. StoreTimeout (100ms) is the deadline of
// every store call (docs/behaviour.md, store outages), so a call must not last much
// longer, whatever the number of round trips it makes.
//
// Redis makes one round trip per call (a script), bounded by the context.
// Memcached makes two to four (gomemcache takes no context); the backend
// bounds the whole call by the context's deadline (this test found that it
// did not).
func TestCallDeadlineAcrossRoundTrips(t *testing.T) {
	// 100ms, and replies 70ms late: under the Memcached kit's 200ms
	// network timeout.
	const deadline = 100 * time.Millisecond
	for _, nk := range networkKits {
		t.Run(nk.name, func(t *testing.T) {
			k := nk.make(t)
			cfg := closedConfig(uniquePrefix())
			cfg.FailureLimit = 1
			cfg.StoreTimeout = deadline
			d, rec := newDefender(t, k.store, cfg)
			// Load the scripts: two failures of another identity reserve
			// and block.
			for i := 0; i < 2; i++ {
				d.Attempt(ctxBG, defender.Login{IP: netip.MustParseAddr("203.0.113.50"), Username: "warm"}).Failed(ctxBG)
			}
			rec.mu.Lock()
			rec.slowest = nil
			rec.mu.Unlock()
			k.toxic("latency", "downstream", `{"latency":70,"jitter":0}`)
			l := defender.Login{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice"}
			const slack = 40 * time.Millisecond
			for i := 0; i < 2; i++ {
				start := time.Now()
				a := d.Attempt(ctxBG, l)
				reserve := time.Since(start)
				start = time.Now()
				dec := a.Failed(ctxBG)
				settle := time.Since(start)
				t.Logf("%s attempt %d: reserve %v (%v), settle %v (%v)", k.name, i+1, reserve, a.Decision().Verdict, settle, dec.Verdict)
			}
			// Each store call (not the settlement, which makes one Block
			// call per identity that went past its limit, one after the
			// other) must end by its deadline.
			rec.mu.Lock()
			defer rec.mu.Unlock()
			t.Logf("%s: slowest store call per operation: %v", k.name, rec.slowest)
			for op, el := range rec.slowest {
				if el > deadline+slack {
					t.Errorf("store call %q lasted %v, past its %v deadline", op, el, deadline)
				}
			}
		})
	}
}
