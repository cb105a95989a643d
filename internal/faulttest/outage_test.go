package faulttest

import (
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/go-defender/defender/defender"
)

// TestOutageTimings: a store that stops answering (requests swallowed)
// costs the first login the deadline; once a probe has confirmed the
// failure (one more deadline), the breaker answers every later login at
// once, without a store call, until a probe finds the store back,
// which is noticed within a probe interval plus a round trip. And a user
// who succeeds while the store is away is not left with a reservation: the
// reset is made once the store is back.
func TestOutageTimings(t *testing.T) {
	for _, mk := range []func(testing.TB) *kit{redisKit, clusterKit, memcachedKit} {
		k := mk(t)
		t.Run(k.name, func(t *testing.T) {
			prefix := uniquePrefix()
			d, _ := newDefender(t, k.store, closedConfig(prefix))
			warmUp(t, d)
			ip := func(i int) defender.Login {
				return defender.Login{IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), Username: fmt.Sprintf("u%d", i)}
			}
			// A success whose reset meets the outage.
			a := d.Attempt(ctxBG, ip(200))
			if !a.Decision().Allowed() {
				t.Fatalf("before the outage: %+v", a.Decision())
			}
			k.toxic("timeout", "upstream", `{"timeout":0}`)
			a.Succeeded(ctxBG)

			start := time.Now()
			first := d.Attempt(ctxBG, ip(1)).Decision()
			firstTook := time.Since(start)
			if first.Verdict != defender.Unavailable {
				t.Fatalf("first login in the outage: %+v", first)
			}
			if firstTook > storeTimeout+margin {
				t.Errorf("the first login took %v, bound %v", firstTook, storeTimeout+margin)
			}
			// The prober confirms the failure (one probe round, a
			// deadline), then the breaker answers at once.
			confirmed := time.Now()
			for i := 0; ; i++ {
				s := time.Now()
				d.Attempt(ctxBG, ip(100+i%50))
				if time.Since(s) < storeTimeout/2 {
					break
				}
				if time.Since(confirmed) > 5*time.Second {
					t.Fatal("the breaker never answered at once")
				}
			}
			failFast := time.Since(start)
			var later []time.Duration
			for i := 0; i < 50; i++ {
				s := time.Now()
				dec := d.Attempt(ctxBG, ip(2+i)).Decision()
				later = append(later, time.Since(s))
				if dec.Verdict != defender.Unavailable {
					t.Fatalf("login %d in the outage: %+v", i, dec)
				}
			}
			sort.Slice(later, func(i, j int) bool { return later[i] < later[j] })
			if later[len(later)-1] >= storeTimeout/2 {
				t.Errorf("a later login waited %v: the breaker did not answer at once", later[len(later)-1])
			}

			k.clear()
			back := time.Now()
			var recovered time.Duration
			for {
				if dec := d.Check(ctxBG, ip(99)); dec.FailMode == "" {
					recovered = time.Since(back)
					break
				}
				if time.Since(back) > 10*time.Second {
					t.Fatal("the store's return was not noticed in 10s")
				}
				time.Sleep(time.Millisecond)
			}
			if recovered > time.Second {
				t.Errorf("recovery noticed after %v, want within 1s", recovered)
			}
			t.Logf("%s: first login in the outage %v (deadline %v); failing fast %v after the outage began; 50 later ones p50 %v, max %v; recovery noticed %v after the store came back",
				k.name, firstTook.Round(time.Millisecond), storeTimeout, failFast.Round(time.Millisecond), later[len(later)/2], later[len(later)-1], recovered.Round(time.Millisecond))

			// The reset lost in the outage is made after it.
			u := counterKey(prefix, "u:u200")
			deadline := time.Now().Add(10 * time.Second)
			for readCounter(t, k.direct, u) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the reset of a success made during the outage was never made")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
