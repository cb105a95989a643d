package defender

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

// clock is a fake clock shared by the engine and the memory store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type recorder struct {
	mu   sync.Mutex
	recs []auditlog.Record
}

func (r *recorder) Record(rec auditlog.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

func (r *recorder) all() []auditlog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]auditlog.Record(nil), r.recs...)
}

type env struct {
	t     *testing.T
	d     *Defender
	store backend.Backend
	clk   *clock
	audit *recorder
	mu    sync.Mutex
	evs   []Event
}

func newEnv(t *testing.T, mut func(*Config)) *env {
	t.Helper()
	clk := newClock()
	st, err := memory.New(&memory.Options{Now: clk.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AuditCoalesceWindow = 0 // one record per attempt, unless a test says otherwise
	if mut != nil {
		mut(&cfg)
	}
	e := &env{t: t, store: st, clk: clk, audit: &recorder{}}
	d, err := New(st, cfg, &Options{Logger: slog.New(slog.DiscardHandler), Now: clk.Now, Audit: e.audit, Hooks: []Hook{func(ev Event) {
		e.mu.Lock()
		e.evs = append(e.evs, ev)
		e.mu.Unlock()
	}}})
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	t.Cleanup(func() {
		d.Close()
		st.Close()
	})
	return e
}

// events returns the events delivered so far (Close flushes the dispatcher).
func (e *env) events() []Event {
	e.d.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.evs...)
}

var ctx = context.Background()

func login(ip, user string) Login { return Login{IP: netip.MustParseAddr(ip), Username: user} }

// fail runs one attempt that fails verification when it is allowed to reach
// it; it reports whether verification happened and the final decision.
func (e *env) fail(l Login) (verified bool, dec Decision) {
	a := e.d.Attempt(ctx, l)
	if !a.Decision().Allowed() {
		return false, a.Decision()
	}
	return true, a.Failed(ctx)
}

func (e *env) succeed(l Login) (verified bool, dec Decision) {
	a := e.d.Attempt(ctx, l)
	if !a.Decision().Allowed() {
		return false, a.Decision()
	}
	return true, a.Succeeded(ctx)
}

func (e *env) count(kind Kind, ip, user string) int64 {
	id := identity{kind: kind, ip: ip, username: user}
	es, err := e.store.Get(ctx, []string{id.key(e.d.prefix, slotCounter)})
	if err != nil {
		e.t.Fatal(err)
	}
	if !es[0].Found {
		return 0
	}
	var n int64
	for _, c := range es[0].Value {
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestLimitPlusOneGetsLockout(t *testing.T) {
	e := newEnv(t, nil) // limit 3
	l := login("203.0.113.7", "alice")
	for i := 1; i <= 3; i++ {
		verified, dec := e.fail(l)
		if !verified || dec.Verdict != Allow {
			t.Fatalf("failure %d: verified=%v dec=%+v, want verified and Allow", i, verified, dec)
		}
	}
	verified, dec := e.fail(l)
	if !verified {
		t.Fatal("attempt 4 (limit+1) was not verified; it must be the last one verified")
	}
	if dec.Verdict != Locked || dec.RetryAfter != 300*time.Second || dec.Duration != 300*time.Second {
		t.Fatalf("failure 4: %+v, want Locked for 300s", dec)
	}
	verified, dec = e.fail(l)
	if verified || dec.Verdict != Locked {
		t.Fatalf("attempt 5: verified=%v %+v, want Locked without verification", verified, dec)
	}
	// A GET from the IP is locked too; so is the username from another IP.
	if dec := e.d.Check(ctx, Login{IP: l.IP}); dec.Verdict != Locked || dec.Kind != KindIP {
		t.Fatalf("GET from blocked IP: %+v", dec)
	}
	if verified, _ := e.fail(login("198.51.100.1", "alice")); verified {
		t.Fatal("blocked username verified from another IP")
	}
	// Locked requests neither count nor extend the block.
	e.clk.Advance(200 * time.Second)
	e.fail(l)
	if dec := e.d.Check(ctx, l); dec.RetryAfter != 100*time.Second {
		t.Fatalf("block extended by a locked attempt: remaining %v, want 100s", dec.RetryAfter)
	}
	e.clk.Advance(100 * time.Second)
	if verified, dec := e.fail(l); !verified || dec.Verdict != Allow {
		t.Fatalf("after the block expired: verified=%v %+v, want a fresh start", verified, dec)
	}
	evs := e.events()
	var ipBlocks, userBlocks int
	for _, ev := range evs {
		switch ev.Kind {
		case EventIPBlocked:
			ipBlocks++
			if ev.IP != "203.0.113.7" || ev.Count != 4 || ev.Duration != 300*time.Second || ev.Lockouts != 1 {
				t.Errorf("ip event %+v", ev)
			}
		case EventUsernameBlocked:
			userBlocks++
			if ev.Username != "alice" {
				t.Errorf("username event %+v", ev)
			}
		}
	}
	if ipBlocks != 1 || userBlocks != 1 {
		t.Fatalf("events %+v: want one IP and one username block", evs)
	}
}

func TestParallelBurstVerifiesAtMostLimitPlusOne(t *testing.T) {
	for _, mode := range []string{"default", "pair", "username-only", "ip-only"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				switch mode {
				case "pair":
					c.LockOutByIPAndUsername = true
				case "username-only":
					c.DisableIPLockout = true
				case "ip-only":
					c.DisableUsernameLockout = true
				}
			})
			var verified atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < 100; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if v, _ := e.fail(login("192.0.2.9", "bob")); v {
						verified.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if n := verified.Load(); n > 4 || n < 1 {
				t.Fatalf("%d of 100 parallel attempts reached verification, want 1..4 (limit+1)", n)
			}
			blocks := 0
			for _, ev := range e.events() {
				if ev.Kind != EventStoreFailed {
					blocks++
				}
			}
			want := 2
			if mode != "default" {
				want = 1
			}
			if blocks != want {
				t.Fatalf("%d block events, want exactly %d", blocks, want)
			}
		})
	}
}

func TestUsernameVariantsShareOneCounter(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DisableIPLockout = true })
	variants := []string{"Alice", " alice ", "ALICE", "ａｌｉｃｅ"}
	for i, v := range variants {
		if verified, _ := e.fail(login("192.0.2.1", v)); !verified {
			t.Fatalf("variant %d %q refused early", i, v)
		}
	}
	if verified, dec := e.fail(login("192.0.2.1", "alice\u00a0")); verified || dec.Verdict != Locked {
		t.Fatalf("5th variant: verified=%v %+v, want locked (the 4 variants share one counter)", verified, dec)
	}
}

func TestResolverSharesCounterAcrossSpellings(t *testing.T) {
	clk := newClock()
	st, _ := memory.New(&memory.Options{Now: clk.Now})
	defer st.Close()
	cfg := DefaultConfig()
	cfg.DisableIPLockout = true
	d, err := New(st, cfg, &Options{Now: clk.Now, Resolver: func(_ context.Context, n string) string {
		if n == "alice@example.com" {
			return "Alice"
		}
		return n
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.Canonical(ctx, "Alice@Example.com"); got != "alice" {
		t.Fatalf("Canonical = %q", got)
	}
	a := d.Attempt(ctx, login("192.0.2.1", "alice@example.com"))
	a.Failed(ctx)
	if a.Username() != "alice" {
		t.Fatalf("counted under %q", a.Username())
	}
}

func TestComboModeLocksPairOnly(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LockOutByIPAndUsername = true })
	l := login("192.0.2.5", "carol")
	for i := 0; i < 4; i++ {
		e.fail(l)
	}
	if v, dec := e.fail(l); v || dec.Verdict != Locked || dec.Kind != KindPair {
		t.Fatalf("pair not locked: %v %+v", v, dec)
	}
	if v, _ := e.fail(login("192.0.2.6", "carol")); !v {
		t.Fatal("same user from another IP was locked: pair mode must lock the pair only")
	}
	if v, _ := e.fail(login("192.0.2.5", "dave")); !v {
		t.Fatal("another user from the same IP was locked")
	}
	if dec := e.d.Check(ctx, Login{IP: l.IP}); dec.Verdict != Allow {
		t.Fatalf("GET locked in pair mode: %+v", dec)
	}
	if dec := e.d.Check(ctx, l); dec.Verdict != Locked {
		t.Fatalf("Check of the pair: %+v", dec)
	}
}

func TestDisableModes(t *testing.T) {
	t.Run("ip-disabled", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.DisableIPLockout = true })
		for i := 0; i < 4; i++ {
			e.fail(login("192.0.2.1", "u"+string(rune('a'+i))))
		}
		if v, _ := e.fail(login("192.0.2.1", "ue")); !v {
			t.Fatal("IP counted although DISABLE_IP_LOCKOUT")
		}
		for i := 0; i < 4; i++ {
			e.fail(login("192.0.2.9", "erin"))
		}
		if dec := e.d.Check(ctx, Login{IP: netip.MustParseAddr("192.0.2.9")}); dec.Verdict != Allow {
			t.Fatal("GET locked with IP lockout disabled")
		}
	})
	t.Run("username-disabled", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.DisableUsernameLockout = true })
		for i := 0; i < 4; i++ {
			e.fail(login(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}).String(), "frank"))
		}
		if v, _ := e.fail(login("192.0.2.50", "frank")); !v {
			t.Fatal("username counted although DISABLE_USERNAME_LOCKOUT")
		}
		for i := 0; i < 4; i++ {
			e.fail(login("192.0.2.77", ""))
		}
		if dec := e.d.Check(ctx, Login{IP: netip.MustParseAddr("192.0.2.77")}); dec.Verdict != Locked {
			t.Fatalf("IP not blocked by anonymous failures: %+v", dec)
		}
	})
}

func TestEmptyUsernameNeverCounted(t *testing.T) {
	e := newEnv(t, nil)
	e.fail(login("192.0.2.1", "   "))
	if n := e.count(KindIP, "192.0.2.1", ""); n != 1 {
		t.Fatalf("IP count %d, want 1", n)
	}
	if n := e.count(KindUsername, "", ""); n != 0 {
		t.Fatal("empty username counted")
	}
}

func TestEscalation(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.DisableIPLockout = true
		c.LockoutCooloffTimes = []time.Duration{10 * time.Second, time.Minute, 0}
	})
	l := login("192.0.2.1", "gina")
	block := func() Decision {
		t.Helper()
		for i := 0; i < 3; i++ {
			if v, _ := e.fail(l); !v {
				t.Fatal("refused before the limit")
			}
		}
		_, dec := e.fail(l)
		if dec.Verdict != Locked {
			t.Fatalf("4th failure not locked: %+v", dec)
		}
		return dec
	}
	if dec := block(); dec.RetryAfter != 10*time.Second || dec.Permanent {
		t.Fatalf("1st lockout %+v, want 10s", dec)
	}
	e.clk.Advance(10 * time.Second)
	if dec := block(); dec.RetryAfter != time.Minute {
		t.Fatalf("2nd lockout %+v, want 1m", dec)
	}
	e.clk.Advance(time.Minute)
	if dec := block(); !dec.Permanent || dec.RetryAfter != 0 {
		t.Fatalf("3rd lockout %+v, want permanent (0)", dec)
	}
	e.clk.Advance(1000 * time.Hour)
	if dec := e.d.Check(ctx, l); dec.Verdict != Locked || !dec.Permanent {
		t.Fatalf("permanent block expired: %+v", dec)
	}
	if ok, err := e.d.UnblockUsername(ctx, "GINA"); !ok || err != nil {
		t.Fatalf("unblock: %v %v", ok, err)
	}
	// The lockout count expired with the window (24h passed): back to 10s.
	if dec := block(); dec.RetryAfter != 10*time.Second {
		t.Fatalf("after the window: %+v, want 10s", dec)
	}
}

func TestEscalationSurvivesUnblockWithinWindow(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.DisableIPLockout = true
		c.LockoutCooloffTimes = []time.Duration{3 * time.Second, 6 * time.Second}
	})
	l := login("192.0.2.1", "hank")
	for round, want := range []time.Duration{3 * time.Second, 6 * time.Second, 6 * time.Second} {
		var dec Decision
		for i := 0; i < 4; i++ {
			_, dec = e.fail(l)
		}
		if dec.RetryAfter != want {
			t.Fatalf("round %d: %+v, want %v", round, dec, want)
		}
		if ok, _ := e.d.UnblockUsername(ctx, "hank"); !ok {
			t.Fatal("unblock found no block")
		}
	}
}

func TestSuccessNeverCountsAsFailure(t *testing.T) {
	for _, resetIP := range []bool{true, false} {
		e := newEnv(t, func(c *Config) { c.ResetIPOnSuccess = resetIP })
		for i := 0; i < 10; i++ {
			if v, dec := e.succeed(login("192.0.2.1", "ivy")); !v || dec.Verdict != Allow {
				t.Fatalf("success %d refused: %+v", i, dec)
			}
		}
		if n := e.count(KindIP, "192.0.2.1", ""); n != 0 {
			t.Fatalf("resetIP=%v: IP counter %d after successes, want 0", resetIP, n)
		}
		if n := e.count(KindUsername, "", "ivy"); n != 0 {
			t.Fatalf("username counter %d after successes", n)
		}
		// Two failures, a success: the IP keeps its failures only when not reset.
		e.fail(login("192.0.2.1", "x1"))
		e.fail(login("192.0.2.1", "x2"))
		e.succeed(login("192.0.2.1", "ivy"))
		want := int64(0)
		if !resetIP {
			want = 2
		}
		if n := e.count(KindIP, "192.0.2.1", ""); n != want {
			t.Fatalf("resetIP=%v: IP counter %d, want %d", resetIP, n, want)
		}
	}
	e := newEnv(t, func(c *Config) { c.LockOutByIPAndUsername = true })
	for i := 0; i < 10; i++ {
		e.succeed(login("192.0.2.1", "ivy"))
	}
	if n := e.count(KindPair, "192.0.2.1", "ivy"); n != 0 {
		t.Fatalf("pair counter %d after successes", n)
	}
}

func TestSuccessResetsUsernameCounter(t *testing.T) {
	e := newEnv(t, nil)
	l := login("192.0.2.1", "jack")
	for i := 0; i < 3; i++ {
		e.fail(l)
	}
	e.succeed(l)
	for i := 0; i < 3; i++ {
		if v, dec := e.fail(l); !v || dec.Verdict != Allow {
			t.Fatalf("after success, failure %d: %+v", i+1, dec)
		}
	}
}

func TestSlidingCounterWindow(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AttemptCooloffTime = 60 * time.Second })
	l := login("192.0.2.1", "kim")
	for i := 0; i < 3; i++ {
		e.fail(l)
		e.clk.Advance(50 * time.Second) // each failure restarts the 60s window
	}
	if _, dec := e.fail(l); dec.Verdict != Locked {
		t.Fatalf("sliding window lost the count: %+v", dec)
	}
	e2 := newEnv(t, func(c *Config) { c.AttemptCooloffTime = 60 * time.Second })
	for i := 0; i < 3; i++ {
		e2.fail(l)
		e2.clk.Advance(61 * time.Second)
	}
	if _, dec := e2.fail(l); dec.Verdict != Allow {
		t.Fatalf("expired counter still counted: %+v", dec)
	}
}

func TestAllowAndBlockLists(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.AllowlistIPs = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
		c.AllowlistUsernames = []string{"Robot"}
		c.BlocklistIPs = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("10.9.9.9/32")}
	})
	for i := 0; i < 10; i++ {
		if v, _ := e.fail(login("10.9.1.1", "")); !v {
			t.Fatal("allow-listed IP locked")
		}
	}
	if n := e.count(KindIP, "10.9.1.1", ""); n != 0 {
		t.Fatal("allow-listed IP counted")
	}
	for i := 0; i < 10; i++ {
		if v, _ := e.fail(login(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String(), "ROBOT")); !v {
			t.Fatal("allow-listed username locked")
		}
	}
	v, dec := e.fail(login("198.19.3.4", "x"))
	if v || dec.Verdict != Locked || !dec.Blocklisted || !dec.Permanent {
		t.Fatalf("block-listed IP: %v %+v", v, dec)
	}
	if dec := e.d.Check(ctx, Login{IP: netip.MustParseAddr("198.18.0.1")}); !dec.Blocklisted {
		t.Fatalf("Check of block-listed IP: %+v", dec)
	}
	if v, _ := e.fail(login("10.9.9.9", "x")); !v {
		t.Fatal("allow list must win over the block list for the same address")
	}
}

func TestIPv6PrefixIsOneClient(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DisableUsernameLockout = true })
	for i := 1; i <= 4; i++ {
		ip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, byte(i), byte(i * 7)})
		e.fail(Login{IP: ip, Username: "u"})
	}
	other := netip.MustParseAddr("2001:db8:0:1:ffff:eeee:dddd:cccc")
	if v, dec := e.fail(Login{IP: other}); v || dec.Verdict != Locked {
		t.Fatalf("another address of the /64 not locked: %+v", dec)
	}
	if v, _ := e.fail(Login{IP: netip.MustParseAddr("2001:db8:0:2::1")}); !v {
		t.Fatal("another /64 locked")
	}
	blocks, next, err := e.d.Blocks(ctx, "", 0)
	if err != nil || next != "" || len(blocks) != 1 || blocks[0].IP != "2001:db8:0:1::/64" {
		t.Fatalf("Blocks = %+v %q %v", blocks, next, err)
	}
	if ok, err := e.d.UnblockIP(ctx, "2001:db8:0:1:abcd::9"); !ok || err != nil {
		t.Fatalf("unblock by any address of the prefix: %v %v", ok, err)
	}
	if v, _ := e.fail(Login{IP: other}); !v {
		t.Fatal("still locked after unblock")
	}
}

func TestMappedIPv4IsIPv4(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DisableUsernameLockout = true })
	for i := 0; i < 2; i++ {
		e.fail(Login{IP: netip.MustParseAddr("::ffff:192.0.2.44").Unmap()})
		a, _ := ParseIP("::ffff:192.0.2.44")
		e.fail(Login{IP: a})
	}
	if v, _ := e.fail(login("192.0.2.44", "")); v {
		t.Fatal("::ffff:192.0.2.44 and 192.0.2.44 counted separately")
	}
}

func TestAdminListAndUnblock(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FailureLimit = 1 })
	odd := []string{"a+b/c%d e", "😀", "<script>alert(1)</script>", "x:y{z}*?[]", string(make([]byte, 0)) + "long" + string(make([]rune, 0))}
	long := ""
	for i := 0; i < 300; i++ {
		long += "é"
	}
	odd = append(odd, long)
	for i, u := range odd {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
		e.fail(Login{IP: ip, Username: u})
		e.fail(Login{IP: ip, Username: u})
	}
	var all []BlockInfo
	cursor := ""
	for {
		page, next, err := e.d.Blocks(ctx, cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	users := map[string]BlockInfo{}
	for _, b := range all {
		if b.Kind == KindUsername {
			users[b.Username] = b
		}
		if b.SecondsRemaining != 300 || b.Count != 2 || b.Permanent {
			t.Errorf("block %+v", b)
		}
	}
	for _, u := range odd {
		c := CanonicalUsername(u)
		if _, ok := users[c]; !ok {
			t.Errorf("username %q (canonical %q) not listed; got %v", u, c, users)
		}
		if ok, err := e.d.UnblockUsername(ctx, u); !ok || err != nil {
			t.Errorf("unblock %q: %v %v", u, ok, err)
		}
	}
	if ok, err := e.d.UnblockUsername(ctx, "nobody"); ok || err != nil {
		t.Errorf("unblock of unknown: %v %v", ok, err)
	}
	if _, err := e.d.UnblockUsername(ctx, " "); !errors.Is(err, ErrBadIdentity) {
		t.Errorf("empty username: %v", err)
	}
	if _, err := e.d.UnblockIP(ctx, "not-an-ip"); !errors.Is(err, ErrBadIdentity) {
		t.Errorf("bad ip: %v", err)
	}
	if _, err := e.d.UnblockPair(ctx, "bad", "x"); !errors.Is(err, ErrBadIdentity) {
		t.Errorf("bad pair ip: %v", err)
	}
	if _, err := e.d.UnblockPair(ctx, "192.0.2.1", ""); !errors.Is(err, ErrBadIdentity) {
		t.Errorf("bad pair user: %v", err)
	}
	unblocks := 0
	for _, ev := range e.events() {
		if ev.Kind == EventUnblocked {
			unblocks++
		}
	}
	if unblocks != len(odd) {
		t.Fatalf("%d unblock events, want %d (only real transitions)", unblocks, len(odd))
	}
}

func TestPairUnblock(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LockOutByIPAndUsername = true; c.FailureLimit = 1 })
	l := login("192.0.2.1", "Zed")
	e.fail(l)
	e.fail(l)
	blocks, _, _ := e.d.Blocks(ctx, "", 10)
	if len(blocks) != 1 || blocks[0].Kind != KindPair || blocks[0].IP != "192.0.2.1" || blocks[0].Username != "zed" {
		t.Fatalf("blocks %+v", blocks)
	}
	if ok, err := e.d.UnblockPair(ctx, "192.0.2.1", "ZED"); !ok || err != nil {
		t.Fatalf("unblock pair %v %v", ok, err)
	}
}

func TestAuditRecords(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FailureLimit = 1 })
	l := Login{IP: netip.MustParseAddr("192.0.2.1"), Username: "  Mallory\n", UserAgent: "ua", Path: "/login", Accept: "text/html"}
	e.fail(l)
	e.fail(l)
	e.fail(l)
	e.succeed(login("192.0.2.2", "ok"))
	recs := e.audit.all()
	if len(recs) != 4 {
		t.Fatalf("%d records", len(recs))
	}
	want := []struct{ success, locked bool }{{false, false}, {false, true}, {false, true}, {true, false}}
	for i, r := range recs {
		if r.Success != want[i].success || r.Locked != want[i].locked || r.ID == "" || r.Time.IsZero() {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if recs[0].Username != "Mallory" || recs[0].IP != "192.0.2.1" || recs[0].UserAgent != "ua" || recs[0].Path != "/login" || recs[0].Accept != "text/html" {
		t.Errorf("record fields %+v", recs[0])
	}
	off := newEnv(t, func(c *Config) { c.StoreAccessAttempts = false })
	off.fail(l)
	if n := len(off.audit.all()); n != 0 {
		t.Fatalf("%d records with StoreAccessAttempts=false", n)
	}
}

func TestSettleTwiceAndNothingCounted(t *testing.T) {
	e := newEnv(t, nil)
	a := e.d.Attempt(ctx, Login{})
	if !a.Decision().Allowed() {
		t.Fatal("an attempt with no identity must be allowed (nothing to count)")
	}
	a.Failed(ctx)
	if dec := a.Succeeded(ctx); dec.Verdict != Allow {
		t.Fatal("second settle changed the decision")
	}
	if n := len(e.audit.all()); n != 1 {
		t.Fatalf("%d records for one attempt", n)
	}
}

func TestHookPanicAndSlowHookNeverBreakLogin(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FailureLimit = 1 })
	release := make(chan struct{})
	e.d.OnEvent(func(Event) { panic("boom") })
	e.d.OnEvent(func(Event) { <-release })
	for i := 0; i < 2000; i++ {
		e.fail(login(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), ""))
		e.fail(login(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), ""))
	}
	if e.d.DroppedEvents() == 0 {
		t.Fatal("a stuck hook did not cause counted drops")
	}
	close(release)
}

func TestNewErrors(t *testing.T) {
	if _, err := New(nil, DefaultConfig(), nil); err == nil {
		t.Fatal("nil store accepted")
	}
	st, _ := memory.New(nil)
	defer st.Close()
	cfg := DefaultConfig()
	cfg.LockOutByIPAndUsername, cfg.DisableIPLockout = true, true
	if _, err := New(st, cfg, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("pair+disable: %v", err)
	}
	d, err := New(st, DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Config().FailureLimit != 3 {
		t.Fatal("Config()")
	}
	d.Close()
	if err := d.Close(); err != nil {
		t.Fatal("second Close", err)
	}
	if _, _, err := d.Blocks(ctx, "", 1); !errors.Is(err, ErrClosed) {
		t.Fatal("Blocks after Close", err)
	}
	if _, err := d.UnblockIP(ctx, "192.0.2.1"); !errors.Is(err, ErrClosed) {
		t.Fatal("Unblock after Close", err)
	}
}

// TestASVSFailedAttemptsPerHour drives an attacker who tries one password
// per second for an hour against one account (rotating IPs, so only the
// username limit applies): with the defaults, far fewer than the 100 failed
// attempts per hour of OWASP ASVS 2.2.1/6.1.1 reach verification.
func TestASVSFailedAttemptsPerHour(t *testing.T) {
	for _, c := range []struct {
		name    string
		lockout []time.Duration
		max     int
	}{
		{"defaults", nil, 48},
		{"escalating", []time.Duration{300 * time.Second, 1800 * time.Second, 3600 * time.Second}, 12},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(cfg *Config) { cfg.LockoutCooloffTimes = c.lockout })
			verified := 0
			for s := 0; s < 3600; s++ {
				ip := netip.AddrFrom4([4]byte{198, 51, byte(s >> 8), byte(s)})
				if v, _ := e.fail(Login{IP: ip, Username: "victim"}); v {
					verified++
				}
				e.clk.Advance(time.Second)
			}
			if verified > c.max {
				t.Fatalf("%d verified attempts in an hour, want <= %d", verified, c.max)
			}
			t.Logf("%s: %d verified attempts in one hour (ASVS bound: 100)", c.name, verified)
		})
	}
}
