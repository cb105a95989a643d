package conformance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// Harness describes the backend under test for RunHarness.
type Harness struct {
	// Open returns a new Backend that looks empty: no key written by an
	// earlier call of Open may be visible through it. It is called once per
	// subtest with that subtest's t; the suite closes the Backend when the
	// subtest ends (t.Cleanup), so Open must not close it itself. Open may
	// call t.Fatal when the store cannot be reached. Required.
	Open func(t *testing.T) backend.Backend

	// Advance moves the clock of every Backend Open returns forward by d,
	// for stores that take an injected clock (the memory and bolt backends'
	// Options.Now). Nil means real time: the suite sleeps for d.
	Advance func(d time.Duration)

	// Now reads the clock that Advance moves. The whole-stack scenario gives
	// it to defender.New as Options.Now, so that the engine and the store
	// agree on the time. Nil means time.Now.
	Now func() time.Time
}

// Run runs the whole suite against the backends open returns, in real time:
// it is RunHarness with a nil Advance. Every check is a subtest named after
// the rule it pins (see the package documentation), so a failure says which
// rule the backend broke. The TTL checks sleep, in total about half a minute;
// a store with an injectable clock can use RunHarness to skip the waiting.
func Run(t *testing.T, open func(t *testing.T) backend.Backend) {
	t.Helper()
	RunHarness(t, Harness{Open: open})
}

// RunHarness runs the whole suite against the backends h.Open returns, using
// h.Advance to let time pass. See Harness and the package documentation.
func RunHarness(t *testing.T, h Harness) {
	t.Helper()
	var open func(t tb) backend.Backend
	if h.Open != nil {
		open = func(t tb) backend.Backend { return h.Open(testingT(t)) }
	}
	newSuite(open, h.Advance, h.Now).run(stdT{t})
}

// tb is the part of *testing.T the suite uses. The exported functions pass a
// stdT; the package's own tests pass a recorder, to check that broken
// backends fail the right subtests without failing the outer test.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(f func())
	Failed() bool
	Run(name string, f func(t tb)) bool
}

// testingT returns the *testing.T under t, which the exported functions
// made (a stdT, possibly capped).
func testingT(t tb) *testing.T {
	if c, ok := t.(capped); ok {
		t = c.tb
	}
	return t.(stdT).T
}

// stdT adapts *testing.T to tb.
type stdT struct{ *testing.T }

func (s stdT) Run(name string, f func(t tb)) bool {
	return s.T.Run(name, func(t *testing.T) { f(stdT{t}) })
}

// maxRepeats is how many failures of one kind (one message format) a
// subtest reports in full; further ones are counted, and the count is
// reported when the subtest ends. A check that fails in a loop (say, every
// call of 64 goroutines returning SQLITE_BUSY) then prints a few lines and
// a total instead of hundreds of identical lines.
const maxRepeats = 3

// capped is a tb that reports at most maxRepeats failures per message
// format, and the number of the others when its test ends. Its subtests
// are capped too, each with its own counts.
type capped struct {
	tb
	r *repeats
}

type repeats struct {
	mu     sync.Mutex
	counts map[string]int
	last   map[string]string // the last message of each format not shown
	order  []string
}

// capRepeats returns t capped; it registers the summary as a cleanup of t.
func capRepeats(t tb) tb {
	if c, ok := t.(capped); ok {
		return c
	}
	r := &repeats{counts: map[string]int{}, last: map[string]string{}}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, format := range r.order {
			if n := r.counts[format] - maxRepeats; n > 0 {
				t.Errorf("... and %d more failures of this kind, not shown; the last: %s", n, r.last[format])
			}
		}
	})
	return capped{t, r}
}

// show counts one failure of format and reports whether to print it; it
// keeps the message of one it does not print.
func (c capped) show(format string, args []any) bool {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if _, ok := c.r.counts[format]; !ok {
		c.r.order = append(c.r.order, format)
	}
	c.r.counts[format]++
	if c.r.counts[format] <= maxRepeats {
		return true
	}
	c.r.last[format] = fmt.Sprintf(format, args...)
	return false
}

func (c capped) Errorf(format string, args ...any) {
	c.tb.Helper()
	if c.show(format, args) {
		c.tb.Errorf(format, args...)
	}
}

func (c capped) Fatalf(format string, args ...any) {
	c.tb.Helper()
	c.show(format, args) // a Fatalf ends its goroutine: it is always shown
	c.tb.Fatalf(format, args...)
}

func (c capped) Run(name string, f func(t tb)) bool {
	return c.tb.Run(name, func(t tb) { f(capRepeats(t)) })
}

// Timing of the TTL checks. The values suit a store whose TTLs have a
// resolution of one second and round up (Memcached): a key written with TTL
// ttl must be readable for at least ttl and gone after ttl+slack.
const (
	// resolution is the coarsest TTL resolution allowed: a reported TTL may
	// exceed the requested one by up to this much (rounding up).
	resolution = time.Second
	// slack is how long past its TTL a key may still be readable.
	slack = 1200 * time.Millisecond
	// early is how much lower than the exact remaining time a reported TTL
	// may be (latency between the write and the read).
	early = 700 * time.Millisecond
	// callTimeout bounds each call's context.
	callTimeout = time.Minute
	// maxPages is the most pages a scan of a few dozen keys may take.
	maxPages = 10000
)

// suite holds what every check needs.
type suite struct {
	openFn  func(t tb) backend.Backend
	advance func(d time.Duration)
	now     func() time.Time
}

// lateness adds up how much longer than asked the real-time sleeps of the
// suite took (a loaded machine oversleeps). The lower bound of a reported
// TTL allows for it, so that a slow test machine is not taken for a store
// that shortens TTLs. It only ever loosens that bound.
var lateness atomic.Int64

// realSleep is Advance in real time: it sleeps and records the oversleep.
func realSleep(d time.Duration) {
	start := time.Now()
	time.Sleep(d)
	if over := time.Since(start) - d; over > 0 {
		lateness.Add(int64(over))
	}
}

func newSuite(open func(t tb) backend.Backend, advance func(time.Duration), now func() time.Time) *suite {
	if advance == nil {
		advance = realSleep
	}
	if now == nil {
		now = time.Now
	}
	return &suite{openFn: open, advance: advance, now: now}
}

// group is a named list of checks.
type group struct {
	name   string
	checks []check
}

// check is one named rule.
type check struct {
	name string
	fn   func(t tb)
}

func (s *suite) groups() []group {
	return []group{
		{"Incr", s.incrChecks()},
		{"TTL", s.ttlChecks()},
		{"Get", s.getChecks()},
		{"Keys", s.keyChecks()},
		{"Concurrency", s.concurrencyChecks()},
		{"Scan", s.scanChecks()},
		{"Delete", s.deleteChecks()},
		{"Namespaces", s.namespaceChecks()},
		{"Reserve", s.reserveChecks()},
		{"Block", s.blockChecks()},
		{"Cancel", s.cancelChecks()},
		{"Closed", s.closedChecks()},
		{"Defender", s.defenderChecks()},
	}
}

func (s *suite) run(t tb) {
	t.Helper()
	t = capRepeats(t)
	if s.openFn == nil {
		t.Fatalf("conformance: Harness.Open is nil")
		return
	}
	for _, g := range s.groups() {
		t.Run(g.name, func(t tb) {
			for _, c := range g.checks {
				t.Run(c.name, c.fn)
			}
		})
	}
}

// open returns a fresh backend that is closed, with Close checked, when t
// ends.
func (s *suite) open(t tb) backend.Backend {
	t.Helper()
	b := s.openFn(t)
	if b == nil {
		t.Fatalf("conformance: Open returned a nil Backend")
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close at the end of the subtest: %v", err)
		}
	})
	return b
}

// ctx returns a context that ends with t.
func ctx(t tb) context.Context {
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return c
}

func incr(t tb, b backend.Backend, keys []string, delta int64, ttl time.Duration) []int64 {
	t.Helper()
	got, err := b.Incr(ctx(t), keys, delta, ttl)
	if err != nil {
		t.Fatalf("Incr(%q, %d, %v): %v", keys, delta, ttl, err)
	}
	if len(got) != len(keys) {
		t.Fatalf("Incr(%q, %d, %v) returned %d values, want one per key", keys, delta, ttl, len(got))
	}
	return got
}

func incr1(t tb, b backend.Backend, key string, delta int64, ttl time.Duration) int64 {
	t.Helper()
	return incr(t, b, []string{key}, delta, ttl)[0]
}

func setBlock(t tb, b backend.Backend, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := b.SetBlock(ctx(t), key, value, ttl); err != nil {
		t.Fatalf("SetBlock(%q, %q, %v): %v", key, value, ttl, err)
	}
}

func get(t tb, b backend.Backend, keys ...string) []backend.Entry {
	t.Helper()
	es, err := b.Get(ctx(t), keys)
	if err != nil {
		t.Fatalf("Get(%q): %v", keys, err)
	}
	if len(es) != len(keys) {
		t.Fatalf("Get(%q) returned %d entries, want one per key", keys, len(es))
	}
	for i, e := range es {
		if e.Found && e.Key != keys[i] {
			t.Errorf("Get(%q)[%d].Key = %q, want the key asked for", keys, i, e.Key)
		}
	}
	return es
}

func get1(t tb, b backend.Backend, key string) backend.Entry {
	t.Helper()
	return get(t, b, key)[0]
}

func del(t tb, b backend.Backend, keys ...string) {
	t.Helper()
	if err := b.Delete(ctx(t), keys...); err != nil {
		t.Fatalf("Delete(%q): %v", keys, err)
	}
}

// scanAll runs a whole scan of prefix with page size limit and returns every
// entry by key. It checks the page bounds, that every entry starts with
// prefix and is Found (reporting the first offence of each kind), and that
// the scan ends. each, when not nil, is called after every page.
func scanAll(t tb, b backend.Backend, prefix string, limit int, each func(page int)) map[string]backend.Entry {
	t.Helper()
	c := ctx(t)
	out := map[string]backend.Entry{}
	var bigPage, foreign, notFound bool
	cursor := ""
	for page := 0; ; page++ {
		if page > maxPages {
			t.Fatalf("Scan(%q, limit %d) did not end after %d pages", prefix, limit, page)
		}
		es, next, err := b.Scan(c, prefix, cursor, limit)
		if err != nil {
			t.Fatalf("Scan(%q, cursor %q, limit %d): %v", prefix, cursor, limit, err)
		}
		if limit > 0 && len(es) > limit && !bigPage {
			bigPage = true
			t.Errorf("Scan(%q, limit %d) returned a page of %d entries", prefix, limit, len(es))
		}
		for _, e := range es {
			if !strings.HasPrefix(e.Key, prefix) && !foreign {
				foreign = true
				t.Errorf("Scan(%q) returned key %q without the prefix", prefix, e.Key)
			}
			if !e.Found && !notFound {
				notFound = true
				t.Errorf("Scan(%q) returned key %q with Found == false", prefix, e.Key)
			}
			out[e.Key] = e
		}
		if each != nil {
			each(page)
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// keysOf returns the sorted keys of m.
func keysOf(m map[string]backend.Entry) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// wantKeys checks that got holds exactly want.
func wantKeys(t tb, what string, got map[string]backend.Entry, want ...string) {
	t.Helper()
	w := append([]string(nil), want...)
	sort.Strings(w)
	g := keysOf(got)
	if strings.Join(g, "\x00") != strings.Join(w, "\x00") {
		t.Errorf("%s: got keys %q, want %q", what, g, w)
	}
}

// checkTTL checks that e is a live key written with ttl about elapsed ago:
// ttl 0 reports TTL 0; otherwise TTL > 0, not above ttl - elapsed by more
// than the rounding of a whole-second store, and not much below ttl - elapsed.
func checkTTL(t tb, what string, e backend.Entry, ttl, elapsed time.Duration) {
	t.Helper()
	if !e.Found {
		t.Errorf("%s: key %q not found, want it alive with TTL %v", what, e.Key, ttl)
		return
	}
	if ttl == 0 {
		if e.TTL != 0 {
			t.Errorf("%s: key %q has TTL %v, want 0 (never expires)", what, e.Key, e.TTL)
		}
		return
	}
	if e.TTL <= 0 {
		t.Errorf("%s: key %q has TTL %v, want > 0: every key written with a TTL keeps it, and a live key's TTL is rounded up to the store's resolution, never down to 0 (0 means never expires)", what, e.Key, e.TTL)
		return
	}
	high := ttl + resolution
	if elapsed > resolution {
		high -= elapsed - resolution
	}
	if e.TTL > high {
		t.Errorf("%s: key %q has TTL %v, want <= %v (ttl %v written %v ago, rounded up): was the TTL extended?", what, e.Key, e.TTL, high, ttl, elapsed)
	}
	if low := ttl - elapsed - early - time.Duration(lateness.Load()); e.TTL < low {
		t.Errorf("%s: key %q has TTL %v, want about %v (>= %v): shorter than written; was the TTL not restarted by the last write, or truncated (TTLs are rounded up to the store's resolution, never down)?", what, e.Key, e.TTL, ttl-elapsed, low)
	}
}

// isErr reports whether err matches one of targets.
func isErr(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func errNames(targets ...error) string {
	names := make([]string, len(targets))
	for i, e := range targets {
		names[i] = fmt.Sprintf("%v", e)
	}
	return strings.Join(names, " or ")
}
