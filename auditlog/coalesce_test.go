package auditlog_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
)

// collector is a Recorder that keeps what it is given; when gate is set,
// Record waits for it to be closed first.
type collector struct {
	mu     sync.Mutex
	recs   []auditlog.Record
	gateIP string        // records from this IP wait for gate
	gate   chan struct{} // closed to let them through
	in     chan struct{} // signalled when a gated Record starts waiting
}

func (c *collector) Record(r auditlog.Record) {
	if c.gate != nil && r.IP == c.gateIP {
		c.in <- struct{}{}
		<-c.gate
	}
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

func (c *collector) all() []auditlog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]auditlog.Record(nil), c.recs...)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

// attempts sums Record.Attempts of the records.
func attempts(rs []auditlog.Record) int64 {
	var n int64
	for _, r := range rs {
		n += r.Attempts()
	}
	return n
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// newTestCoalescer returns a Coalescer on a fake clock whose background
// goroutine runs only when the test sends a tick.
func newTestCoalescer(t testing.TB, next auditlog.Recorder, window time.Duration, opts *auditlog.CoalescerOptions) (*auditlog.Coalescer, *fakeClock, chan time.Time) {
	t.Helper()
	clock := newFakeClock()
	var o auditlog.CoalescerOptions
	if opts != nil {
		o = *opts
	}
	o.Now = clock.Now
	tick := make(chan time.Time)
	c, err := auditlog.NewCoalescerTicked(next, window, &o, tick)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, clock, tick
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func locked(at time.Time, ip, typed, canonical string) auditlog.Record {
	return auditlog.Record{Time: at, IP: ip, Username: typed, CanonicalUsername: canonical,
		UserAgent: "flood/1.0", Path: "/login/", Accept: "*/*", Locked: true}
}

func TestNewCoalescerErrors(t *testing.T) {
	next := &collector{}
	for _, tc := range []struct {
		name   string
		next   auditlog.Recorder
		window time.Duration
		opts   *auditlog.CoalescerOptions
		want   string
	}{
		{"nil next", nil, time.Second, nil, "next Recorder is nil"},
		{"zero window", next, 0, nil, "DEFENDER_AUDIT_COALESCE_WINDOW"},
		{"negative window", next, -time.Second, nil, "must be positive"},
		{"negative MaxOpen", next, time.Second, &auditlog.CoalescerOptions{MaxOpen: -1}, "MaxOpen"},
		{"negative MaxFanout", next, time.Second, &auditlog.CoalescerOptions{MaxFanout: -1}, "MaxFanout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := auditlog.NewCoalescer(tc.next, tc.window, tc.opts)
			if c != nil || !errors.Is(err, auditlog.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewCoalescer = %v, %v; want an ErrInvalidConfig naming %q", c, err, tc.want)
			}
		})
	}
}

// TestCoalescerPassesThrough: failures and successes reach the next
// Recorder at once (when Record returns), unchanged, one for one.
func TestCoalescerPassesThrough(t *testing.T) {
	next := &collector{}
	c, _, _ := newTestCoalescer(t, next, time.Hour, nil)
	in := []auditlog.Record{
		{IP: "192.0.2.1", Username: "alice"},                                 // a failure, no time, no ID
		{IP: "192.0.2.1", Username: "alice", Success: true},                  // a success
		{IP: "192.0.2.1", Username: "alice", Success: true, Locked: true},    // never both, but not locked out
		{ID: "x", Time: time.Unix(1, 0), IP: "192.0.2.1", Username: "alice"}, // the same failure again
		{ID: "y", Time: time.Unix(1, 0), IP: "192.0.2.1", Username: "alice"}, // and again
		{IP: "192.0.2.2", Username: "bob", FailMode: "open", Success: false}, // decided by a fail mode
	}
	for i, r := range in {
		c.Record(r)
		if got := next.all(); len(got) != i+1 || got[i] != r {
			t.Fatalf("record %d: next got %+v, want it unchanged at once", i, got)
		}
	}
	if st := c.Stats(); st.Open != 0 || st.Locked != 0 {
		t.Errorf("stats %+v: failures and successes must not be coalesced", st)
	}
}

// TestCoalescerFlood: a 60 s flood of one blocked identity, 1000 locked
// attempts a second, with a 1 s window, comes out as 60 records whose
// counts add up to every attempt.
func TestCoalescerFlood(t *testing.T) {
	next := &collector{}
	c, clock, _ := newTestCoalescer(t, next, time.Second, nil)
	const perSecond, seconds = 1000, 60
	t0 := clock.Now()
	spellings := []string{"alice", "ALICE", "ａｌｉｃｅ"} // all counted as alice
	for i := 0; i < perSecond*seconds; i++ {
		at := t0.Add(time.Duration(i) * time.Second / perSecond)
		c.Record(locked(at, "203.0.113.7", spellings[i%3], "alice"))
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := next.all()
	t.Logf("%d locked attempts in %d s -> %d records", perSecond*seconds, seconds, len(got))
	if len(got) != seconds {
		t.Errorf("%d records, want %d (one per window)", len(got), seconds)
	}
	if n := attempts(got); n != perSecond*seconds {
		t.Errorf("counts add up to %d, want %d", n, perSecond*seconds)
	}
	for i, r := range got {
		wantStart := t0.Add(time.Duration(i) * time.Second)
		if r.Count != perSecond || !r.Time.Equal(wantStart) || !r.Until.Equal(wantStart.Add(time.Second-time.Millisecond)) {
			t.Errorf("record %d: count %d, %v..%v; want %d, %v..%v", i, r.Count, r.Time, r.Until, perSecond, wantStart, wantStart.Add(time.Second-time.Millisecond))
		}
		if r.Username != spellings[i*perSecond%3] || r.CanonicalUsername != "alice" || r.IP != "203.0.113.7" || !r.Locked || r.UserAgent != "flood/1.0" {
			t.Errorf("record %d: %+v; want the first attempt's fields", i, r)
		}
	}
	if st := c.Stats(); st.Locked != perSecond*seconds || st.Emitted != seconds || st.Open != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestCoalescerIdentities: records coalesce per IP, canonical username
// (whatever the typed spelling; the typed one when there is no canonical
// one) and fail mode.
func TestCoalescerIdentities(t *testing.T) {
	next := &collector{}
	c, clock, _ := newTestCoalescer(t, next, time.Minute, nil)
	at := clock.Now()
	feed := []auditlog.Record{
		locked(at, "192.0.2.1", "alice", "alice"),
		locked(at, "192.0.2.1", "ALICE", "alice"),
		locked(at, "192.0.2.1", "ａｌｉｃｅ", "alice"),
		locked(at, "192.0.2.2", "alice", "alice"),
		locked(at, "192.0.2.1", "bob", "bob"),
		locked(at, "192.0.2.1", "Carol", ""), // no canonical name: by the typed one
		locked(at, "192.0.2.1", "Carol", ""),
		locked(at, "192.0.2.1", "carol", ""),
	}
	fm := locked(at, "192.0.2.1", "alice", "alice")
	fm.FailMode = "closed"
	feed = append(feed, fm)
	for _, r := range feed {
		c.Record(r)
	}
	if n := next.len(); n != 0 {
		t.Fatalf("%d records emitted before any window ended", n)
	}
	c.Flush()
	counts := map[string]int64{}
	for _, r := range next.all() {
		counts[fmt.Sprintf("%s/%s/%s/%s", r.IP, r.Username, r.CanonicalUsername, r.FailMode)] = r.Attempts()
	}
	want := map[string]int64{
		"192.0.2.1/alice/alice/":       3,
		"192.0.2.2/alice/alice/":       1,
		"192.0.2.1/bob/bob/":           1,
		"192.0.2.1/Carol//":            2,
		"192.0.2.1/carol//":            1,
		"192.0.2.1/alice/alice/closed": 1,
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("identities %v, want %v", counts, want)
	}
	// A lone locked record comes out as it went in.
	for _, r := range next.all() {
		if r.Attempts() == 1 && (r.Count != 0 || !r.Until.IsZero() || !r.Time.Equal(at)) {
			t.Errorf("lone record changed: %+v", r)
		}
	}
}

// TestCoalescerBackground: a window is emitted by the background goroutine
// once it has ended on the clock, without a later record; not before.
func TestCoalescerBackground(t *testing.T) {
	next := &collector{}
	c, clock, tick := newTestCoalescer(t, next, time.Second, nil)
	t0 := clock.Now()
	c.Record(locked(t0, "192.0.2.1", "alice", "alice"))
	c.Record(locked(t0.Add(300*time.Millisecond), "192.0.2.1", "alice", "alice"))
	c.Record(locked(t0.Add(500*time.Millisecond), "192.0.2.9", "bob", "bob"))
	c.Record(auditlog.Record{Locked: true, IP: "192.0.2.7", Username: "zed"}) // no time: the clock's
	clock.Add(999 * time.Millisecond)
	tick <- clock.Now()
	tick <- clock.Now() // the first tick has been handled when the second is taken
	if n := next.len(); n != 0 {
		t.Fatalf("%d records emitted before the window ended", n)
	}
	clock.Add(time.Millisecond)
	tick <- clock.Now()
	waitFor(t, "the first window", func() bool { return next.len() == 2 })
	got := next.all()
	if got[0].Count != 2 || !got[0].Until.Equal(t0.Add(300*time.Millisecond)) || got[1].Username != "zed" || !got[1].Time.Equal(t0) {
		t.Errorf("emitted %+v", got)
	}
	clock.Add(500 * time.Millisecond)
	tick <- clock.Now()
	waitFor(t, "the second window", func() bool { return next.len() == 3 })
	if st := c.Stats(); st.Open != 0 || st.Emitted != 3 || st.Locked != 4 {
		t.Errorf("stats %+v", st)
	}
}

// TestCoalescerOutOfOrder: a record older than the window's first one
// moves Time back; counted records that carry a Count and Until (already
// coalesced) add up.
func TestCoalescerOutOfOrder(t *testing.T) {
	next := &collector{}
	c, clock, _ := newTestCoalescer(t, next, time.Second, nil)
	t0 := clock.Now()
	c.Record(locked(t0.Add(100*time.Millisecond), "192.0.2.1", "alice", "alice"))
	c.Record(locked(t0, "192.0.2.1", "alice", "alice"))
	pre := locked(t0.Add(200*time.Millisecond), "192.0.2.1", "alice", "alice")
	pre.Count, pre.Until = 5, t0.Add(400*time.Millisecond)
	c.Record(pre)
	c.Flush()
	got := next.all()
	if len(got) != 1 || got[0].Count != 7 || !got[0].Time.Equal(t0) || !got[0].Until.Equal(t0.Add(400*time.Millisecond)) {
		t.Fatalf("got %+v; want one record of 7 attempts from t0 to t0+400ms", got)
	}
}

// TestCoalescerMaxOpen: past MaxOpen open windows the oldest is emitted
// early; nothing is lost.
func TestCoalescerMaxOpen(t *testing.T) {
	next := &collector{}
	c, clock, _ := newTestCoalescer(t, next, time.Hour, &auditlog.CoalescerOptions{MaxOpen: 4})
	at := clock.Now()
	for i := 0; i < 10; i++ {
		for j := 0; j < 3; j++ {
			c.Record(locked(at.Add(time.Duration(i)*time.Second), fmt.Sprintf("192.0.2.%d", i), "alice", "alice"))
		}
	}
	st := c.Stats()
	if st.Open != 4 || st.Early != 6 || next.len() != 6 {
		t.Fatalf("stats %+v, %d emitted; want 4 open, 6 emitted early", st, next.len())
	}
	for i, r := range next.all() {
		if r.IP != fmt.Sprintf("192.0.2.%d", i) || r.Count != 3 {
			t.Errorf("early record %d: %s x%d; want the oldest first, whole", i, r.IP, r.Count)
		}
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := next.all(); len(got) != 10 || attempts(got) != 30 {
		t.Errorf("%d records, %d attempts after Close; want 10, 30", len(got), attempts(got))
	}
}

// TestCoalescerFanout: a blocked IP that rotates usernames, and a blocked
// username attacked from many IPs, give at most MaxFanout + 1 records per
// window; the overflow record has no username (no IP).
func TestCoalescerFanout(t *testing.T) {
	next := &collector{}
	c, clock, _ := newTestCoalescer(t, next, time.Second, &auditlog.CoalescerOptions{MaxFanout: 8})
	t0 := clock.Now()
	const n = 5000
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("user%d", i)
		c.Record(locked(t0.Add(time.Duration(i)*time.Microsecond), "203.0.113.7", u, u))
	}
	for i := 0; i < n; i++ {
		c.Record(locked(t0.Add(time.Duration(i)*time.Microsecond), fmt.Sprintf("10.0.%d.%d", i/256, i%256), "root", "root"))
	}
	c.Flush()
	got := next.all()
	if len(got) != 2*(8+1) || attempts(got) != 2*n {
		t.Fatalf("%d records, %d attempts; want %d records, %d attempts", len(got), attempts(got), 2*9, 2*n)
	}
	var ipOverflow, userOverflow *auditlog.Record
	for i := range got {
		switch r := &got[i]; {
		case r.Username == "" && r.CanonicalUsername == "":
			ipOverflow = r
		case r.IP == "":
			userOverflow = r
		}
	}
	if ipOverflow == nil || ipOverflow.IP != "203.0.113.7" || ipOverflow.Count != n-8 {
		t.Errorf("IP overflow record %+v; want 203.0.113.7 with no username x%d", ipOverflow, n-8)
	}
	if userOverflow == nil || userOverflow.CanonicalUsername != "root" || userOverflow.Count != n-8 {
		t.Errorf("username overflow record %+v; want root with no IP x%d", userOverflow, n-8)
	}
	if st := c.Stats(); st.Overflowed != 2*(n-8) {
		t.Errorf("stats %+v; want %d overflowed", st, 2*(n-8))
	}
	// The next window starts afresh: a rotated username has a window of
	// its own again, and an ended overflow window is emitted.
	c.Record(locked(t0.Add(2*time.Second), "203.0.113.7", "x", "x"))
	for i := 0; i < 9; i++ {
		u := fmt.Sprintf("next%d", i)
		c.Record(locked(t0.Add(2*time.Second), "198.51.100.1", u, u))
	}
	c.Record(locked(t0.Add(4*time.Second), "198.51.100.1", "late", "late"))
	c.Flush()
	got = next.all()[len(got):]
	if len(got) != 11 || attempts(got) != 11 {
		t.Errorf("after the window: %d records, %d attempts; want 11, 11", len(got), attempts(got))
	}
}

// TestCoalescerNeverLoses: concurrent callers, many identities past
// MaxOpen and MaxFanout, times across many windows, the background
// goroutine and Flush running meanwhile: the counts of what is emitted add
// up to the locked records fed in, and every failure passes through.
func TestCoalescerNeverLoses(t *testing.T) {
	next := &collector{}
	c, clock, tick := newTestCoalescer(t, next, 100*time.Millisecond, &auditlog.CoalescerOptions{MaxOpen: 64, MaxFanout: 4})
	t0 := clock.Now()
	const goroutines, each = 8, 5000
	var wg sync.WaitGroup
	var fails int64
	var mu sync.Mutex
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			nf := int64(0)
			for i := 0; i < each; i++ {
				at := t0.Add(time.Duration(i) * time.Millisecond)
				ip := fmt.Sprintf("192.0.2.%d", rnd.IntN(40))
				u := fmt.Sprintf("u%d", rnd.IntN(40))
				r := locked(at, ip, u, u)
				if rnd.IntN(10) == 0 {
					r.Locked = false
					nf++
				}
				c.Record(r)
			}
			mu.Lock()
			fails += nf
			mu.Unlock()
		}()
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case tick <- t0.Add(time.Duration(i) * 10 * time.Millisecond):
				clock.Add(10 * time.Millisecond)
			}
			if i%50 == 0 {
				c.Flush()
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-done
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := next.all()
	var lockedIn, failures int64
	for _, r := range got {
		if r.Locked {
			lockedIn += r.Attempts()
		} else {
			failures++
		}
	}
	st := c.Stats()
	t.Logf("%d records in, %d records out; stats %+v", goroutines*each, len(got), st)
	if lockedIn+failures != goroutines*each || failures != fails || int64(st.Locked) != lockedIn {
		t.Errorf("locked attempts out %d + failures %d, want %d in all (%d failures, stats %+v)", lockedIn, failures, goroutines*each, fails, st)
	}
	if st.Early == 0 || st.Overflowed == 0 || st.Open != 0 {
		t.Errorf("stats %+v: the test must reach MaxOpen and MaxFanout", st)
	}
}

// TestCoalescerClose: Close emits the open windows, stops the goroutine and
// lets later records pass straight through; a second Close is ErrClosed.
func TestCoalescerClose(t *testing.T) {
	next := &collector{}
	c, clock, _ := newTestCoalescer(t, next, time.Hour, nil)
	at := clock.Now()
	c.Record(locked(at, "192.0.2.1", "alice", "alice"))
	c.Record(locked(at, "192.0.2.1", "alice", "alice"))
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := next.all(); len(got) != 1 || got[0].Count != 2 {
		t.Fatalf("after Close: %+v", got)
	}
	c.Record(locked(at, "192.0.2.1", "alice", "alice"))
	c.Record(locked(at, "192.0.2.1", "alice", "alice"))
	if n := next.len(); n != 3 {
		t.Errorf("records after Close: %d emitted, want each passed through", n-1)
	}
	if err := c.Close(context.Background()); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	c.Flush() // nothing open: a no-op
	if n := next.len(); n != 3 {
		t.Errorf("Flush after Close emitted %d", n-3)
	}
}

// TestCoalescerCloseContext: when the goroutine is stuck in the next
// Recorder, Close returns the context's error, with every window emitted.
func TestCoalescerCloseContext(t *testing.T) {
	next := &collector{gateIP: "192.0.2.1", gate: make(chan struct{}), in: make(chan struct{})}
	c, clock, tick := newTestCoalescer(t, next, time.Second, nil)
	at := clock.Now()
	c.Record(locked(at, "192.0.2.1", "alice", "alice"))
	clock.Add(time.Second)
	tick <- clock.Now()
	<-next.in // the goroutine is emitting alice's window, and waits
	c.Record(locked(at.Add(time.Second), "192.0.2.2", "bob", "bob"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with the goroutine stuck = %v, want context.Canceled", err)
	}
	if got := next.all(); len(got) != 1 || got[0].Username != "bob" {
		t.Fatalf("Close emitted %+v, want bob's open window", got)
	}
	close(next.gate)
	waitFor(t, "the stuck record", func() bool { return next.len() == 2 })
}

// TestCoalescerRealTicker: NewCoalescer's own ticker emits an ended window
// (a smoke test of the production wiring, with a short window).
func TestCoalescerRealTicker(t *testing.T) {
	next := &collector{}
	c, err := auditlog.NewCoalescer(next, 20*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	c.Record(auditlog.Record{IP: "192.0.2.1", Username: "alice", Locked: true})
	c.Record(auditlog.Record{IP: "192.0.2.1", Username: "alice", Locked: true})
	waitFor(t, "the window to be emitted", func() bool { return next.len() == 1 })
	if r := next.all()[0]; r.Attempts() != 2 {
		t.Errorf("emitted %+v", r)
	}
}

// TestCoalescerBytesPerLockedRequest: the whole path (Coalescer, Writer,
// file sink) under a 60 s flood of one blocked identity at 2000 requests a
// second writes at most 5 bytes per locked request on average, and every
// attempt is counted in the file. A blocked IP that rotates usernames
// stays bounded too: at most MaxFanout + 1 records per window.
func TestCoalescerBytesPerLockedRequest(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		name := "one identity"
		if rotate {
			name = "rotating usernames"
		}
		t.Run(name, func(t *testing.T) {
			e := newFileEnv(t)
			w := newWriter(t, e.sink, auditlog.WriterOptions{})
			c, clock, tick := newTestCoalescer(t, w, time.Second, nil)
			const perSecond, seconds = 2000, 60
			t0 := clock.Now()
			for i := 0; i < perSecond*seconds; i++ {
				if i%(perSecond/4) == 0 && i > 0 {
					// The background goroutine's tick, every quarter of a
					// window, as NewCoalescer's ticker does.
					clock.Add(time.Second / 4)
					tick <- clock.Now()
				}
				u := "alice"
				if rotate {
					u = fmt.Sprintf("user%06d", i)
				}
				r := locked(t0.Add(time.Duration(i)*time.Second/perSecond), "203.0.113.7", u, u)
				r.UserAgent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
				r.Accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
				c.Record(r)
			}
			if err := c.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(e.path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.sink.Query(context.Background(), auditlog.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			per := float64(fi.Size()) / (perSecond * seconds)
			t.Logf("%s: %d locked requests -> %d records, %d bytes: %.3f bytes per locked request (%.0f bytes per record)",
				name, perSecond*seconds, len(got), fi.Size(), per, float64(fi.Size())/float64(len(got)))
			if attempts(got) != perSecond*seconds {
				t.Errorf("the file counts %d attempts, want %d", attempts(got), perSecond*seconds)
			}
			maxRecords := seconds + 1 // one per window
			if rotate {
				maxRecords = (auditlog.DefaultCoalesceFanout + 1) * (seconds + 1)
			}
			if len(got) > maxRecords {
				t.Errorf("%d records, want at most %d", len(got), maxRecords)
			}
			if !rotate && per > 5 {
				t.Errorf("%.2f bytes per locked request, want at most 5", per)
			}
		})
	}
}
