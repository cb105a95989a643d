package faulttest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/defender"
)

// storeTimeout is the per-call deadline of every fault test, and margin
// what a decision may take beyond it: a correctness bound (a call that
// ignores its deadline hangs for seconds, or forever), not a speed
// benchmark. Both are wider than the defaults (100ms) because CI runs these
// tests under -race on two cores that other work shares: at a load average
// of 9, a 100ms deadline was missed by healthy calls and a decision took
// 440ms. Every fault here is still far beyond the deadline.
const (
	storeTimeout = 200 * time.Millisecond
	margin       = 400 * time.Millisecond
)

// faultKind is one way of taking the store away, and of giving it back.
type faultKind struct {
	name  string
	apply func(*kit)
	heal  func(*kit)
}

var faultKinds = []faultKind{
	// The proxy is disabled: connections closed, new ones refused.
	{"down", (*kit).cut, (*kit).restore},
	// Every connection is reset (RST) as soon as a request arrives, before
	// it reaches the server.
	{"reset", func(k *kit) { k.toxic("reset_peer", "upstream", `{"timeout":0}`) }, (*kit).clear},
	// Requests are swallowed: the server never answers.
	{"hang", func(k *kit) { k.toxic("timeout", "upstream", `{"timeout":0}`) }, (*kit).clear},
}

func counterKey(prefix, identity string) string { return prefix + ":f:{" + identity + "}" }

// readCounter reads a counter directly from the store (0 when absent).
func readCounter(t testing.TB, b backend.Backend, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxBG, 5*time.Second)
	defer cancel()
	es, err := b.Get(ctx, []string{key})
	if err != nil {
		t.Fatalf("direct get %s: %v", key, err)
	}
	if !es[0].Found {
		return 0
	}
	n, err := strconv.ParseInt(string(es[0].Value), 10, 64)
	if err != nil {
		t.Fatalf("counter %s = %q: %v", key, es[0].Value, err)
	}
	return n
}

// TestFailModes cuts each network store (three ways) under each fail mode
// and checks the decisions, their latency, the events, the metric and the
// recovery onto the shared store.
func TestFailModes(t *testing.T) {
	for _, nk := range networkKits {
		t.Run(nk.name, func(t *testing.T) {
			k := nk.make(t)
			for _, mode := range []defender.FailMode{defender.FailClosed, defender.FailOpen, defender.FailLocal} {
				for _, fk := range faultKinds {
					t.Run(string(mode)+"/"+fk.name, func(t *testing.T) { runFailMode(t, k, mode, fk) })
				}
			}
		})
	}
}

func runFailMode(t *testing.T, k *kit, mode defender.FailMode, fk faultKind) {
	prefix := uniquePrefix()
	cfg := defender.DefaultConfig()
	cfg.CachePrefix = prefix
	cfg.StoreTimeout = storeTimeout
	cfg.FailMode = mode
	d, rec := newDefender(t, k.store, cfg) // audit records go to rec
	app := newLoginApp(t, d)
	var worst maxDur
	const ipA, ipB = "192.0.2.10", "198.51.100.7"

	// Warm up (connections, scripts), then one failure, counted on the
	// shared store. On a loaded machine a healthy call can still miss the
	// 100ms deadline: then the fail mode decided it (the audit record says
	// so) and the test starts again with another username.
	warmUp(t, d)
	user, userKey := "", ""
	for try := 0; ; try++ {
		user = fmt.Sprintf("alice%d", try)
		userKey = counterKey(prefix, "u:"+user)
		w, el := app.post(ipA, user, "wrong")
		fms := rec.auditFailModes()
		if fms[len(fms)-1] == "" {
			worst.add(el)
			if w.Code != 401 {
				t.Fatalf("healthy failure: status %d", w.Code)
			}
			break
		}
		if try == 4 {
			t.Fatalf("the store missed its deadline on 5 healthy logins in a row")
		}
		warmUp(t, d)
	}
	if n := readCounter(t, k.direct, userKey); n != 1 {
		t.Fatalf("healthy: counter %d, want 1", n)
	}
	base := len(rec.auditFailModes())

	fk.apply(k)
	failDecisions := 0
	verifiedBefore := app.verified.Load()
	// Five wrong passwords during the outage.
	var statuses []int
	for i := 0; i < 5; i++ {
		w, el := app.post(ipB, user, "wrong")
		worst.add(el)
		failDecisions++
		statuses = append(statuses, w.Code)
		if w.Code == 500 {
			t.Fatalf("outage: 500: %s", w.Body)
		}
	}
	verified := app.verified.Load() - verifiedBefore
	switch mode {
	case defender.FailClosed:
		if want := []int{503, 503, 503, 503, 503}; !equalInts(statuses, want) || verified != 0 {
			t.Fatalf("closed: statuses %v (want %v), %d verifications (want 0)", statuses, want, verified)
		}
	case defender.FailOpen:
		if want := []int{401, 401, 401, 401, 401}; !equalInts(statuses, want) || verified != 5 {
			t.Fatalf("open: statuses %v (want %v), %d verifications (want 5)", statuses, want, verified)
		}
	case defender.FailLocal:
		// Counted in the in-process store from zero: failures 1..3 are
		// answered, the 4th blocks (lockout page), the 5th is locked
		// before verification.
		if want := []int{401, 401, 401, 429, 429}; !equalInts(statuses, want) || verified != 4 {
			t.Fatalf("local: statuses %v (want %v), %d verifications (want 4)", statuses, want, verified)
		}
	}
	// A page view during the outage.
	w, el := app.get(ipB)
	worst.add(el)
	failDecisions++
	wantGet := map[defender.FailMode]int{defender.FailClosed: 503, defender.FailOpen: 401, defender.FailLocal: 429}[mode]
	if w.Code != wantGet {
		t.Fatalf("GET during outage: %d, want %d", w.Code, wantGet)
	}
	// The API's view of the same.
	start := time.Now()
	a := d.Attempt(ctxBG, defender.Login{IP: netip.MustParseAddr(ipB), Username: user})
	dec := a.Decision()
	a.Failed(ctxBG)
	worst.add(time.Since(start))
	failDecisions++
	if dec.FailMode != mode {
		t.Fatalf("decision during outage: %+v, want fail mode %s", dec, mode)
	}
	wantVerdict := map[defender.FailMode]defender.Verdict{defender.FailClosed: defender.Unavailable, defender.FailOpen: defender.Allow, defender.FailLocal: defender.Locked}[mode]
	if dec.Verdict != wantVerdict {
		t.Fatalf("decision during outage: %v, want %v", dec.Verdict, wantVerdict)
	}
	if mode != defender.FailLocal && !errors.Is(dec.Err, backend.ErrUnavailable) && !errors.Is(dec.Err, context.DeadlineExceeded) {
		t.Errorf("decision error %v wraps neither ErrUnavailable nor DeadlineExceeded", dec.Err)
	}

	// The audit records of the outage's logins (the five POSTs and the
	// API attempt) carry the fail mode.
	fms := rec.auditFailModes()[base:]
	if len(fms) != 6 {
		t.Fatalf("%d audit records of the outage, want 6", len(fms))
	}
	for i, fm := range fms {
		if fm != string(mode) {
			t.Errorf("audit record %d of the outage: fail_mode %q, want %q", i+1, fm, mode)
		}
	}

	fk.heal(k)
	// Wait until the shared store answers again (a cluster client may need
	// a moment to take its nodes back).
	deadline := time.Now().Add(10 * time.Second)
	for {
		start := time.Now()
		dec := d.Check(ctxBG, defender.Login{IP: netip.MustParseAddr("203.0.113.99")})
		worst.add(time.Since(start))
		if dec.FailMode == "" {
			break
		}
		failDecisions++
		if time.Now().After(deadline) {
			t.Fatalf("store did not come back: %+v", dec)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Counting resumes on the shared store: nothing of the outage reached
	// it (the requests were refused, reset or swallowed before the server).
	w, el = app.post(ipA, user, "wrong")
	worst.add(el)
	if w.Code != 401 {
		t.Fatalf("after recovery: status %d, want 401", w.Code)
	}
	if n := readCounter(t, k.direct, userKey); n != 2 {
		t.Fatalf("after recovery: shared counter %d, want 2", n)
	}
	if mode == defender.FailLocal {
		// What the local store counted and blocked is not consulted once
		// the shared store answers.
		if dec := d.Check(ctxBG, defender.Login{IP: netip.MustParseAddr(ipB), Username: user}); dec.Verdict != defender.Allow || dec.FailMode != "" {
			t.Errorf("after recovery, the client blocked locally: %+v, want allowed by the shared store", dec)
		}
	}

	if err := d.Close(); err != nil { // delivers the queued events
		t.Fatal(err)
	}
	if f, r := rec.count(defender.EventStoreFailed), rec.count(defender.EventStoreRecovered); f != 1 || r != 1 {
		t.Errorf("events: %d store_failed, %d store_recovered; want 1 and 1", f, r)
	}
	if got := rec.failModeCount(mode); got != int64(failDecisions) {
		t.Errorf("Metrics.FailMode(%s) counted %d, want %d (one per decision taken by the fail mode)", mode, got, failDecisions)
	}
	if max := worst.get(); max > storeTimeout+margin {
		t.Errorf("slowest decision %v, bound %v", max, storeTimeout+margin)
	} else {
		t.Logf("%s %s/%s: slowest decision %v", k.name, mode, fk.name, max)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
