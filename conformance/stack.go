package conformance

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/defender"
)

// limit is the failure limit of the whole-stack scenario.
const limit = 3

// stack is a Defender over a fresh backend.
type stack struct {
	t tb
	b backend.Backend
	d *defender.Defender
}

// newStack returns a Defender with DefaultConfig, FailureLimit 3 and the
// given lockout durations, over a fresh backend, closed when t ends.
func (s *suite) newStack(t tb, lockouts ...time.Duration) *stack {
	t.Helper()
	b := s.open(t)
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = limit
	cfg.LockoutCooloffTimes = lockouts
	cfg.StoreAccessAttempts = false
	cfg.StoreTimeout = 10 * time.Second // a loaded test machine must not trip the fail mode
	cfg.BlockCacheTTL = 0               // every answer from the backend under test, not the engine's cache
	d, err := defender.New(b, cfg, &defender.Options{Now: s.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("defender.New: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Defender.Close: %v", err)
		}
	})
	return &stack{t: t, b: b, d: d}
}

var (
	clientIP = netip.MustParseAddr("192.0.2.10")
	login    = defender.Login{IP: clientIP, Username: "alice"}
)

// fail runs one attempt that is verified and wrong; it checks that the
// attempt was allowed and returns Failed's decision.
func (st *stack) fail(n int, l defender.Login) defender.Decision {
	st.t.Helper()
	a := st.d.Attempt(ctx(st.t), l)
	if dec := a.Decision(); !dec.Allowed() {
		st.t.Fatalf("attempt %d: Decision = %+v, want Allowed (verify the password)", n, dec)
	}
	return a.Failed(ctx(st.t))
}

// failUnlocked runs n allowed failures none of which may lock.
func (st *stack) failUnlocked(n int, l defender.Login) {
	st.t.Helper()
	for i := 1; i <= n; i++ {
		if dec := st.fail(i, l); dec.Verdict != defender.Allow {
			st.t.Fatalf("failure %d of limit %d: Failed = %+v, want Allow (a normal wrong-password answer)", i, limit, dec)
		}
	}
}

// lockOut runs limit allowed failures and the failure that locks; it
// returns the locking decision.
func (st *stack) lockOut(l defender.Login) defender.Decision {
	st.t.Helper()
	st.failUnlocked(limit, l)
	dec := st.fail(limit+1, l)
	if dec.Verdict != defender.Locked {
		st.t.Fatalf("failure %d of limit %d: Failed = %+v, want Locked (failure limit+1 gets the lockout)", limit+1, limit, dec)
	}
	return dec
}

// locked checks that an attempt on l is locked without verification.
func (st *stack) locked(what string, l defender.Login) defender.Decision {
	st.t.Helper()
	a := st.d.Attempt(ctx(st.t), l)
	dec := a.Decision()
	if dec.Verdict != defender.Locked {
		st.t.Errorf("%s: Attempt = %+v, want Locked", what, dec)
	}
	if c := st.d.Check(ctx(st.t), l); c.Verdict != defender.Locked {
		st.t.Errorf("%s: Check = %+v, want Locked", what, c)
	}
	return dec
}

// allowed checks that an attempt on l is allowed, and settles it as a
// success.
func (st *stack) allowed(what string, l defender.Login) {
	st.t.Helper()
	a := st.d.Attempt(ctx(st.t), l)
	if dec := a.Decision(); !dec.Allowed() {
		st.t.Fatalf("%s: Attempt = %+v, want Allowed", what, dec)
	}
	a.Succeeded(ctx(st.t))
}

// checkRetry checks that a lock reports about d left.
func checkRetry(t tb, what string, dec defender.Decision, d time.Duration) {
	t.Helper()
	if dec.Permanent || dec.RetryAfter <= 0 || dec.RetryAfter > d+resolution || dec.RetryAfter < d-early {
		t.Errorf("%s: RetryAfter %v (permanent %v), want about %v", what, dec.RetryAfter, dec.Permanent, d)
	}
}

func (s *suite) defenderChecks() []check {
	return []check{
		{"Limit", func(t tb) {
			// Failures 1..limit are answered normally; attempt limit+1 is
			// still verified and its failure gets the lockout; the next
			// attempt is locked without verification.
			st := s.newStack(t, time.Hour)
			dec := st.lockOut(login)
			checkRetry(t, "lockout", dec, time.Hour)
			checkRetry(t, "attempt during the block", st.locked("attempt after the lockout", login), time.Hour)
			st.locked("same username from another IP", defender.Login{IP: netip.MustParseAddr("198.51.100.7"), Username: "alice"})
			st.locked("same IP with another username", defender.Login{IP: clientIP, Username: "bob"})
			st.allowed("another IP and username", defender.Login{IP: netip.MustParseAddr("198.51.100.7"), Username: "bob"})
		}},
		{"SuccessResets", func(t tb) {
			// A success before the limit resets the counters: limit more
			// failures are allowed before the lockout.
			st := s.newStack(t, time.Hour)
			st.failUnlocked(limit-1, login)
			st.allowed("success before the limit", login)
			st.lockOut(login)
			st.locked("after the lockout", login)
		}},
		{"SuccessResetsUsername", func(t tb) {
			// The username counter is reset by a success even when the
			// failures came from other IPs.
			st := s.newStack(t, time.Hour)
			for i := 0; i < limit; i++ {
				ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
				st.failUnlocked(1, defender.Login{IP: ip, Username: "alice"})
			}
			st.allowed("success at the limit", login)
			for i := 0; i < limit; i++ {
				ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 10)})
				st.failUnlocked(1, defender.Login{IP: ip, Username: "alice"})
			}
		}},
		{"Expiry", func(t tb) {
			// After the block's TTL the user can try again, afresh.
			st := s.newStack(t, shortTTL)
			st.lockOut(login)
			st.locked("during the block", login)
			s.advance(shortTTL + slack)
			st.failUnlocked(limit, login)
			st.fail(limit+1, login)
			st.locked("after the second lockout", login)
		}},
		{"Escalation", func(t tb) {
			// With LockoutCooloffTimes [1s 2s], the second block lasts 2s.
			st := s.newStack(t, shortTTL, 2*shortTTL)
			checkRetry(t, "first lockout", st.lockOut(login), shortTTL)
			s.advance(shortTTL + slack)
			checkRetry(t, "second lockout", st.lockOut(login), 2*shortTTL)
			const wait = shortTTL + 200*time.Millisecond // past the first duration, within the second
			s.advance(wait)
			st.locked("second block, after the first block's duration", login)
			s.advance(2*shortTTL + slack - wait)
			st.allowed("after the second block", login)
		}},
		{"Burst", func(t tb) {
			// Reserve-before-verify: of 100 simultaneous attempts on one
			// username, at most limit+1 reach verification.
			st := s.newStack(t, time.Hour)
			c := ctx(t)
			var allowed atomic.Int64
			attempts := make([]*defender.Attempt, reservers)
			parallel(reservers, func(i int) {
				l := defender.Login{IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), Username: "alice"}
				a := st.d.Attempt(c, l)
				attempts[i] = a
				if a.Decision().Allowed() {
					allowed.Add(1)
				}
			})
			if n := allowed.Load(); n < 1 || n > limit+1 {
				t.Errorf("%d parallel attempts with limit %d: %d allowed to verify, want 1..%d", reservers, limit, n, limit+1)
			}
			for _, a := range attempts {
				if a.Decision().Allowed() {
					a.Failed(c)
				}
			}
			st.locked("after the burst", login)
		}},
	}
}
