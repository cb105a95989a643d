package faulttest

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/redis"
	"github.com/go-defender/defender/defender"
)

// closedConfig is the configuration of the fault tests: fail mode closed,
// a 100ms deadline, no audit.
func closedConfig(prefix string) defender.Config {
	cfg := defender.DefaultConfig()
	cfg.CachePrefix = prefix
	cfg.StoreTimeout = storeTimeout
	cfg.StoreAccessAttempts = false
	return cfg
}

// waitRecovered polls Check until the shared store answers; it returns
// how many decisions the fail mode took meanwhile.
func waitRecovered(t testing.TB, d *defender.Defender, worst *maxDur) int {
	t.Helper()
	n := 0
	deadline := time.Now().Add(15 * time.Second)
	for {
		start := time.Now()
		// A username too, so that the check reaches the store in every
		// lockout mode.
		dec := d.Check(ctxBG, defender.Login{IP: netip.MustParseAddr("203.0.113.99"), Username: "probe-user"})
		worst.add(time.Since(start))
		if dec.FailMode == "" {
			return n
		}
		n++
		if time.Now().After(deadline) {
			t.Fatalf("store did not come back: %+v", dec)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// warmUp waits until the store answers (a connection left over from an
// earlier fault, or a loaded machine, may fail the first call), so that
// the test starts healthy.
func warmUp(t testing.TB, d *defender.Defender) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		dec := d.Check(ctxBG, defender.Login{IP: netip.MustParseAddr("203.0.113.1"), Username: "probe-user"})
		if dec.FailMode == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up: %+v", dec)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkBound(t testing.TB, what string, worst *maxDur) {
	t.Helper()
	if max := worst.get(); max > storeTimeout+margin {
		t.Errorf("%s: slowest decision %v, bound %v", what, max, storeTimeout+margin)
	} else {
		t.Logf("%s: slowest decision %v (bound %v)", what, max, storeTimeout+margin)
	}
}

// TestLatencyBeyondDeadline delays every reply by 600ms (StoreTimeout is
// 200ms): each login is answered 503 within the deadline plus the margin.
// What reached the server: on Redis the first slow attempt went out on an
// open connection and was executed (one round trip; the reply came too
// late), so it is counted although it was refused — the conservative
// direction; go-redis then drops the connection, and every later attempt
// times out in the new connection's handshake, before its script is sent.
// Memcached's first round trip is a read, so nothing was written. The
// counter is therefore exactly 1 + 1 + 1 = 3 on Redis and 1 + 1 = 2 on
// Memcached.
func TestLatencyBeyondDeadline(t *testing.T) {
	want := map[string]int64{"redis": 3, "cluster": 3, "memcached": 2}
	for _, nk := range networkKits {
		t.Run(nk.name, func(t *testing.T) {
			k := nk.make(t)
			prefix := uniquePrefix()
			cfg := closedConfig(prefix)
			cfg.DisableIPLockout = true // one counter, one slot
			d, rec := newDefender(t, k.store, cfg)
			app := newLoginApp(t, d)
			warmUp(t, d)
			var worst maxDur
			w, el := app.post("192.0.2.1", "alice", "wrong")
			worst.add(el)
			if w.Code != 401 {
				t.Fatalf("healthy: %d", w.Code)
			}
			k.toxic("latency", "downstream", `{"latency":600,"jitter":0}`)
			for i := 0; i < 5; i++ {
				w, el := app.post("192.0.2.1", "alice", "wrong")
				worst.add(el)
				if w.Code != 503 {
					t.Fatalf("slow store: status %d, want 503", w.Code)
				}
			}
			k.clear()
			waitRecovered(t, d, &worst)
			w, el = app.post("192.0.2.1", "alice", "wrong")
			worst.add(el)
			if w.Code != 401 && w.Code != 429 {
				t.Fatalf("after recovery: %d", w.Code)
			}
			if n := readCounter(t, k.direct, counterKey(prefix, "u:alice")); n != want[k.name] && !(n == 0 && w.Code == 429) {
				t.Errorf("counter %d after 1 + 5 late + 1 attempts, want %d", n, want[k.name])
			} else {
				t.Logf("%s: counter %d after 1 + 5 late + 1 attempts", k.name, n)
			}
			checkBound(t, k.name+" latency", &worst)
			d.Close()
			if f, r := rec.count(defender.EventStoreFailed), rec.count(defender.EventStoreRecovered); f != 1 || r != 1 {
				t.Errorf("events: %d failed, %d recovered; want 1, 1", f, r)
			}
		})
	}
}

// TestLostReply loses the reply to the reservation's write: the server
// executed it, the client saw its connection reset. The attempt is refused
// (503) and the counter, read directly, went up by exactly one: the backend
// did not resend the write — even with go-redis retries enabled.
func TestLostReply(t *testing.T) {
	type variant struct {
		name string
		// setup returns the store to give defender, the direct store, and
		// functions that arm and disarm the loss.
		setup func(t *testing.T, prefix string) (store, direct backend.Backend, arm, disarm func())
	}
	redisVariant := func(name, query string) variant {
		return variant{name, func(t *testing.T, prefix string) (backend.Backend, backend.Backend, func(), func()) {
			k := redisKit(t)
			st := k.store
			if query != "" {
				s, err := redis.Open(ctxBG, "redis://"+k.faults[0].Addr+"?"+query)
				if err != nil {
					t.Fatal(err)
				}
				closeAll(t, s)
				st = s
			}
			return st, k.direct, func() { k.toxic("reset_peer", "downstream", `{"timeout":0}`) }, k.clear
		}}
	}
	variants := []variant{
		redisVariant("redis", ""),
		redisVariant("redis/max_retries=3", "max_retries=3"),
		{"cluster", func(t *testing.T, prefix string) (backend.Backend, backend.Backend, func(), func()) {
			k := clusterKit(t)
			return k.store, k.direct, func() { k.toxic("reset_peer", "downstream", `{"timeout":0}`) }, k.clear
		}},
		{"memcached", func(t *testing.T, prefix string) (backend.Backend, backend.Backend, func(), func()) {
			k := memcachedKit(t)
			// Only the reply to the counter's compare-and-swap is lost;
			// the read before it and the index updates pass.
			dr := newDropper(t, k.faults[0].Up, "cas "+prefix+":f:", "add "+prefix+":f:")
			st, err := backend.Open(ctxBG, "memcached://"+dr.Addr+"?timeout=200ms")
			if err != nil {
				t.Fatal(err)
			}
			closeAll(t, st)
			return st, k.direct, func() { dr.armed.Store(true) }, func() {
				if dr.lost.Load() != 1 {
					t.Errorf("dropper lost %d replies, want 1", dr.lost.Load())
				}
				dr.armed.Store(false)
			}
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			prefix := uniquePrefix()
			store, direct, arm, disarm := v.setup(t, prefix)
			cfg := closedConfig(prefix)
			cfg.DisableIPLockout = true // one counter, one slot, one script
			d, rec := newDefender(t, store, cfg)
			app := newLoginApp(t, d)
			warmUp(t, d)
			var worst maxDur
			key := counterKey(prefix, "u:alice")
			w, el := app.post("192.0.2.1", "alice", "wrong")
			worst.add(el)
			if w.Code != 401 || readCounter(t, direct, key) != 1 {
				t.Fatalf("healthy: %d, counter %d", w.Code, readCounter(t, direct, key))
			}
			arm()
			w, el = app.post("192.0.2.1", "alice", "wrong")
			worst.add(el)
			if w.Code != 503 {
				t.Fatalf("lost reply: status %d, want 503", w.Code)
			}
			disarm()
			if n := readCounter(t, direct, key); n != 2 {
				t.Fatalf("lost reply: counter %d, want 2 (the write happened once and was not resent)", n)
			}
			waitRecovered(t, d, &worst)
			w, el = app.post("192.0.2.1", "alice", "wrong")
			worst.add(el)
			if w.Code != 401 {
				t.Fatalf("after recovery: %d", w.Code)
			}
			if n := readCounter(t, direct, key); n != 3 {
				t.Fatalf("after recovery: counter %d, want 3", n)
			}
			checkBound(t, v.name+" lost reply", &worst)
			d.Close()
			if f, r := rec.count(defender.EventStoreFailed), rec.count(defender.EventStoreRecovered); f != 1 || r != 1 {
				t.Errorf("events: %d failed, %d recovered; want 1, 1", f, r)
			}
		})
	}
}

// TestBlackHole points each backend at a server that accepts connections
// and never answers: every decision is Unavailable within the bound, alone
// and under 16 concurrent logins, and closing leaves no goroutine behind.
func TestBlackHole(t *testing.T) {
	for _, scheme := range []string{"redis", "redis+cluster", "memcached"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			bh := newBlackHole(t)
			st, err := backend.Open(ctxBG, scheme+"://"+bh.Addr+"?"+map[string]string{
				"redis": "dial_timeout=200ms", "redis+cluster": "dial_timeout=200ms", "memcached": "timeout=200ms"}[scheme])
			if err != nil {
				t.Fatal(err)
			}
			closeAll(t, st)
			d, rec := newDefender(t, st, closedConfig(uniquePrefix()))
			app := newLoginApp(t, d)
			var worst maxDur
			var wg sync.WaitGroup
			var bad atomic.Int64
			for g := 0; g < 16; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 4; i++ {
						w, el := app.post(fmt.Sprintf("192.0.2.%d", g+1), "alice", "wrong")
						worst.add(el)
						if w.Code != 503 {
							bad.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if bad.Load() != 0 || app.verified.Load() != 0 {
				t.Fatalf("%d answers were not 503, %d passwords verified", bad.Load(), app.verified.Load())
			}
			checkBound(t, scheme+" black hole", &worst)
			d.Close()
			if f := rec.count(defender.EventStoreFailed); f != 1 {
				t.Errorf("%d store_failed events, want 1", f)
			}
		})
	}
}

// TestDiesMidFlood runs 1000 logins from 8 workers (rotating IPs and
// usernames, a limit too high to block) and takes the store away after
// attempt 300 — the proxy cut, or the server killed — and gives it back
// before attempt 700. Every answer is 401 or 503, never 500; every decision
// is within the bound; counting resumes.
func TestDiesMidFlood(t *testing.T) {
	type variant struct {
		name string
		make func(testing.TB) *kit
		kill bool
	}
	variants := []variant{
		{"redis/cut", redisKit, false},
		{"redis/kill", redisKit, true},
		{"cluster/cut", clusterKit, false},
		{"memcached/cut", memcachedKit, false},
		{"memcached/kill", memcachedKit, true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			k := v.make(t)
			prefix := uniquePrefix()
			cfg := closedConfig(prefix)
			cfg.FailureLimit = 1 << 20
			d, rec := newDefender(t, k.store, cfg)
			app := newLoginApp(t, d)
			warmUp(t, d)
			var worst maxDur
			const total, workers, users = 1000, 8, 50
			var next atomic.Int64
			at300, restored := make(chan struct{}), make(chan struct{})
			var statusMu sync.Mutex
			statuses := map[int]int{}
			ok401 := make([]int64, users) // 401s per user, before the cut
			var wg sync.WaitGroup
			for g := 0; g < workers; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= total {
							return
						}
						if i == 300 {
							close(at300)
						}
						if i >= 700 {
							<-restored
						}
						u := int(i % users)
						w, el := app.post(fmt.Sprintf("10.%d.%d.%d", 1+i/65536, i/256%256, i%256), "user"+strconv.Itoa(u), "wrong")
						worst.add(el)
						statusMu.Lock()
						statuses[w.Code]++
						if w.Code == 401 {
							ok401[u]++
						}
						statusMu.Unlock()
					}
				}()
			}
			<-at300
			if v.kill {
				k.kill()
			} else {
				k.cut()
			}
			for next.Load() < 650 {
				time.Sleep(time.Millisecond)
			}
			if v.kill {
				k.revive()
			} else {
				k.restore()
			}
			close(restored)
			wg.Wait()
			t.Logf("%s: statuses %v", v.name, statuses)
			for code := range statuses {
				if code != 401 && code != 503 {
					t.Errorf("status %d in the flood", code)
				}
			}
			if statuses[503] == 0 {
				t.Errorf("no 503: the outage was not seen")
			}
			waitRecovered(t, d, &worst)
			if !v.kill {
				// The store kept its data: each user's counter holds
				// every answered failure, and at most the attempts in
				// flight at the cut besides (counted, reply lost).
				var sum, answered int64
				for u := 0; u < users; u++ {
					sum += readCounter(t, k.direct, counterKey(prefix, "u:user"+strconv.Itoa(u)))
					answered += ok401[u]
				}
				// Never fewer than the answered failures; more only by
				// refused attempts whose write happened (in flight at the
				// cut: at most one per worker, unless a loaded machine
				// made a healthy call miss its deadline too).
				if sum < answered || sum > answered+int64(statuses[503]) {
					t.Errorf("counters sum to %d; %d failures were answered, %d refused", sum, answered, statuses[503])
				} else {
					t.Logf("counters sum to %d; %d failures answered: %d refused attempts were counted (in flight at the cut; %d workers)", sum, answered, sum-answered, workers)
				}
			}
			w, el := app.post("192.0.2.200", "fresh", "wrong")
			worst.add(el)
			if w.Code != 401 {
				t.Fatalf("after recovery: %d", w.Code)
			}
			if n := readCounter(t, k.direct, counterKey(prefix, "u:fresh")); n != 1 {
				t.Fatalf("after recovery: counter %d, want 1", n)
			}
			checkBound(t, v.name, &worst)
			d.Close()
			f, r := rec.count(defender.EventStoreFailed), rec.count(defender.EventStoreRecovered)
			if f < 1 || f != r {
				t.Errorf("events: %d failed, %d recovered; want equal and at least 1", f, r)
			}
			t.Logf("events: %d store_failed, %d store_recovered; fail-mode decisions %d", f, r, rec.failModeCount(defender.FailClosed))
		})
	}
}

var (
	_ = context.Background
	_ = sort.Ints
	_ = strings.Contains
)
