package conformance

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// This file proves that the suite has teeth: a correct reference backend
// (a mutex map with a fake clock) passes it, and deliberately broken
// variants of it fail it, each in the subtests of the rule it breaks.

// newClock returns a fake clock shared by the backends of one run, offset
// from a fixed time.
func newClock(offset time.Duration) *Clock {
	return NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(offset))
}

// flaw is a deliberate bug of the reference backend.
type flaw int

const (
	// nonAtomicIncr reads, yields, then writes.
	nonAtomicIncr flaw = 1 << iota
	// noSlidingTTL sets a counter's TTL only when it creates the counter.
	noSlidingTTL
	// reblockKeepsTTL keeps a live block's old expiry on SetBlock.
	reblockKeepsTTL
	// scanDropsLast drops the last key of every full page.
	scanDropsLast
	// getIgnoresExpiry returns expired keys from Get as Found.
	getIgnoresExpiry
	// reserveChecksFirst implements Reserver by reading the blocks, then
	// incrementing: the order the ordering rule of backend.Reserve forbids.
	reserveChecksFirst
	// incrCountsBlocks lets Incr turn a block into a counter.
	incrCountsBlocks
	// scanAnyPrefix fails a Scan with an invalid prefix with a plain error.
	scanAnyPrefix
	// truncTTL reports TTLs truncated to whole seconds (rounded down).
	truncTTL
	// closeMidCall makes calls that were under way when Close ran fail
	// with a plain error instead of completing or returning ErrClosed.
	closeMidCall
	// keepsLentKeys claims to borrow keys (backend.KeyBorrower) but keeps
	// the caller's strings.
	keepsLentKeys
)

// borrowing is a ref that claims to copy the keys it keeps.
type borrowing struct{ *ref }

func (borrowing) BorrowsKeys() bool { return true }

// checksFirst is a ref with a Reserve that breaks the ordering rule.
type checksFirst struct{ *ref }

func (c checksFirst) Reserve(ctx context.Context, r *backend.Reservation) error {
	r.Blocked, r.Block, r.Counts = -1, backend.Entry{}, r.Counts[:0]
	es, err := c.Get(ctx, r.Blocks)
	if err != nil {
		return err
	}
	for i, e := range es {
		if e.Found {
			r.Blocked, r.Block = i, e
			return nil
		}
	}
	runtime.Gosched()
	counts, err := c.Incr(ctx, r.Counters, 1, r.TTL)
	r.Counts = append(r.Counts, counts...)
	return err
}

// ref is the reference backend: a map under a mutex, with expiry checked
// against now. With coarse set it behaves like Memcached behind a backend
// that rounds TTLs up: expiry at a whole second, a key lives between ttl
// and ttl+1s, and TTLs are reported in whole seconds, rounded up.
type ref struct {
	now    func() time.Time
	coarse bool
	flaws  flaw

	mu     sync.Mutex
	items  map[string]item
	closed bool
}

type item struct {
	value []byte
	exp   time.Time // zero: never expires
	block bool      // written by SetBlock
}

func newRef(now func() time.Time, coarse bool, flaws flaw) *ref {
	return &ref{now: now, coarse: coarse, flaws: flaws, items: map[string]item{}}
}

func (r *ref) expiry(ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Time{}
	}
	now := r.now()
	if r.coarse {
		n := (ttl + time.Second - 1) / time.Second
		return now.Truncate(time.Second).Add((n + 1) * time.Second)
	}
	return now.Add(ttl)
}

func (r *ref) live(it item, ok bool) bool {
	return ok && (it.exp.IsZero() || r.now().Before(it.exp))
}

func (r *ref) entry(key string, it item) backend.Entry {
	e := backend.Entry{Key: key, Found: true, Value: append([]byte{}, it.value...)}
	if !it.exp.IsZero() {
		e.TTL = it.exp.Sub(r.now())
		if r.flaws&truncTTL != 0 {
			// A whole-seconds store that rounds down.
			e.TTL = e.TTL.Truncate(time.Second)
			return e
		}
		if r.coarse {
			e.TTL = (e.TTL + time.Second - 1).Truncate(time.Second)
		}
		if e.TTL <= 0 { // only with getIgnoresExpiry
			e.TTL = time.Nanosecond
		}
	}
	return e
}

func (r *ref) check(ctx context.Context, keys []string) error {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		if r.flaws&closeMidCall != 0 {
			return errors.New("ref: use of closed store")
		}
		return backend.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ref: %w", err)
	}
	for _, k := range keys {
		if err := backend.CheckKey(k); err != nil {
			return err
		}
	}
	return nil
}

func (r *ref) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	if err := r.check(ctx, keys); err != nil {
		return nil, err
	}
	if err := backend.CheckTTL(ttl); err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	if r.flaws&nonAtomicIncr == 0 {
		r.mu.Lock()
		defer r.mu.Unlock()
	}
	for i, k := range keys {
		if r.flaws&nonAtomicIncr != 0 {
			r.mu.Lock()
		}
		it, ok := r.items[k]
		var n int64
		alive := r.live(it, ok)
		if alive {
			n, _ = strconv.ParseInt(string(it.value), 10, 64)
		}
		if r.flaws&nonAtomicIncr != 0 {
			r.mu.Unlock()
			runtime.Gosched()
			r.mu.Lock()
		}
		if alive && it.block && r.flaws&incrCountsBlocks == 0 {
			if r.flaws&nonAtomicIncr != 0 {
				r.mu.Unlock()
			}
			return nil, fmt.Errorf("%w: ref: Incr on block %q", backend.ErrInvalid, k)
		}
		n += delta
		exp := r.expiry(ttl)
		if r.flaws&noSlidingTTL != 0 && alive {
			exp = it.exp
		}
		r.items[k] = item{value: []byte(strconv.FormatInt(n, 10)), exp: exp}
		out[i] = n
		if r.flaws&nonAtomicIncr != 0 {
			r.mu.Unlock()
		}
	}
	return out, nil
}

func (r *ref) SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := r.check(ctx, []string{key}); err != nil {
		return err
	}
	if err := backend.CheckTTL(ttl); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	exp := r.expiry(ttl)
	if it, ok := r.items[key]; r.flaws&reblockKeepsTTL != 0 && r.live(it, ok) {
		exp = it.exp
	}
	r.items[key] = item{value: append([]byte{}, value...), exp: exp, block: true}
	return nil
}

func (r *ref) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	if err := r.check(ctx, keys); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]backend.Entry, len(keys))
	for i, k := range keys {
		it, ok := r.items[k]
		if r.live(it, ok) || (ok && r.flaws&getIgnoresExpiry != 0) {
			out[i] = r.entry(k, it)
		} else {
			out[i] = backend.Entry{Key: k}
		}
	}
	return out, nil
}

func (r *ref) Delete(ctx context.Context, keys ...string) error {
	if err := r.check(ctx, keys); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		delete(r.items, k)
	}
	return nil
}

func (r *ref) Scan(ctx context.Context, prefix, cursor string, limit int) ([]backend.Entry, string, error) {
	if err := r.check(ctx, nil); err != nil {
		return nil, "", err
	}
	if err := backend.CheckPrefix(prefix); err != nil {
		if r.flaws&scanAnyPrefix != 0 {
			return nil, "", errors.New("ref: bad query") // as a store handed the prefix would say
		}
		return nil, "", err
	}
	if limit <= 0 {
		limit = 10
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k, it := range r.items {
		if strings.HasPrefix(k, prefix) && k > cursor && r.live(it, true) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	next := ""
	if len(keys) > limit {
		keys = keys[:limit]
		next = keys[limit-1]
	}
	out := make([]backend.Entry, 0, len(keys))
	for _, k := range keys {
		out = append(out, r.entry(k, r.items[k]))
	}
	if r.flaws&scanDropsLast != 0 && len(out) == limit {
		out = out[:len(out)-1]
	}
	return out, next, nil
}

func (r *ref) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// recorder is a tb that records failures instead of reporting them, so that
// a suite run against a broken backend can fail without failing the test.
type recorder struct {
	name string
	rep  *report

	mu       sync.Mutex
	failed   bool
	cleanups []func()
}

// report collects the failures of one suite run, by subtest name.
type report struct {
	mu       sync.Mutex
	failures map[string][]string
	ran      map[string]bool // every subtest that ran
	parents  map[string]bool // subtests that ran subtests
}

func newRecorder() *recorder {
	return &recorder{rep: &report{failures: map[string][]string{}, ran: map[string]bool{}, parents: map[string]bool{}}}
}

func (r *recorder) Helper()                   {}
func (r *recorder) Logf(string, ...any)       {}
func (r *recorder) Errorf(f string, a ...any) { r.fail(fmt.Sprintf(f, a...)) }

func (r *recorder) Fatalf(f string, a ...any) {
	r.fail(fmt.Sprintf(f, a...))
	runtime.Goexit()
}

func (r *recorder) fail(msg string) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	r.rep.mu.Lock()
	r.rep.failures[r.name] = append(r.rep.failures[r.name], msg)
	r.rep.mu.Unlock()
}

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recorder) Run(name string, f func(t tb)) bool {
	c := &recorder{name: strings.TrimPrefix(r.name+"/"+name, "/"), rep: r.rep}
	r.rep.mu.Lock()
	r.rep.ran[c.name] = true
	r.rep.parents[r.name] = true
	r.rep.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			for i := len(c.cleanups) - 1; i >= 0; i-- {
				c.cleanups[i]()
			}
		}()
		defer func() {
			if p := recover(); p != nil {
				c.fail(fmt.Sprintf("panic: %v\n%s", p, debug.Stack()))
			}
		}()
		f(c)
	}()
	<-done
	if c.Failed() {
		r.mu.Lock()
		r.failed = true
		r.mu.Unlock()
	}
	return !c.Failed()
}

// failed returns the names of the subtests that reported a failure.
func (rep *report) failed() []string {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	var out []string
	for name := range rep.failures {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// leaves returns the names of the subtests that ran no subtests.
func (rep *report) leaves() []string {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	var out []string
	for name := range rep.ran {
		if !rep.parents[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (rep *report) String() string {
	var sb strings.Builder
	for _, name := range rep.failed() {
		fmt.Fprintf(&sb, "--- %s\n", name)
		for _, m := range rep.failures[name] {
			fmt.Fprintf(&sb, "    %s\n", m)
		}
	}
	return sb.String()
}

// runRef runs the whole suite on a recorder against reference backends
// with the given flaws and returns the report.
func runRef(coarse bool, offset time.Duration, flaws flaw) *report {
	clk := newClock(offset)
	open := func(tb) backend.Backend {
		r := newRef(clk.Now, coarse, flaws)
		if flaws&reserveChecksFirst != 0 {
			return checksFirst{r}
		}
		if flaws&keepsLentKeys != 0 {
			return borrowing{r}
		}
		return r
	}
	rec := newRecorder()
	rec.Run("", newSuite(open, clk.Advance, clk.Now).run)
	return rec.rep
}

func TestReferencePasses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		coarse bool
		offset time.Duration
	}{
		{"exact", false, 0},
		{"exact/offset", false, 123456789},
		{"whole-seconds", true, 0},
		{"whole-seconds/offset-0.5s", true, 500 * time.Millisecond},
		{"whole-seconds/offset-0.999s", true, 999 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := runRef(c.coarse, c.offset, 0)
			if f := rep.failed(); len(f) != 0 {
				t.Errorf("the reference backend failed %d subtests:\n%s", len(f), rep)
			}
		})
	}
}

func TestTeeth(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		flaw flaw
		// must maps each subtest that must fail to a text its message
		// must hold; may lists the prefixes of the other subtests allowed
		// to fail (consequences of the same bug).
		must map[string]string
		may  []string
	}{
		{"NonAtomicIncr", nonAtomicIncr, map[string]string{
			"Concurrency/Incr":            "increments were lost",
			"Concurrency/IncrSeveralKeys": "counter",
			"Concurrency/Reserve":         "each once",
		}, []string{"Defender/Burst"}},
		{"TTLNotRefreshed", noSlidingTTL, map[string]string{
			"TTL/Sliding": "each Incr restarts",
		}, []string{"TTL/Expiry/"}},
		{"TTLLostOnReblock", reblockKeepsTTL, map[string]string{
			"TTL/Reblock":       "a re-block restarts the TTL",
			"Block/RestartsTTL": "was the TTL not restarted",
		}, []string{"TTL/Expiry/", "Block/"}},
		{"ScanMissesKeys", scanDropsLast, map[string]string{
			"Scan/Pagination/limit=1": "want",
			"Scan/Pagination/limit=5": "want",
			"Scan/DeleteDuringScan":   "which was never deleted",
			"Keys/RoundTrip":          "Scan",
		}, []string{"Scan/", "Keys/", "Namespaces/"}},
		{"ReserveChecksFirst", reserveChecksFirst, map[string]string{
			"Concurrency/ReserveRacingBlock": "the ordering rule",
		}, []string{"Defender/Burst"}},
		{"IncrCountsBlocks", incrCountsBlocks, map[string]string{
			"Incr/IncrOnBlock": "the block must stay as it was",
		}, nil},
		{"ScanAnyPrefix", scanAnyPrefix, map[string]string{
			"Scan/InvalidPrefix": "want nil or an error wrapping " + backend.ErrInvalid.Error(),
		}, nil},
		{"TruncatedTTL", truncTTL, map[string]string{
			"TTL/Sliding": "rounded up to the store's resolution, never down to 0",
		}, []string{"TTL/", "Scan/", "Reserve/", "Block/", "Defender/"}},
		{"PlainErrorAfterClose", closeMidCall, map[string]string{
			"Closed/AfterClose/Get": "want " + backend.ErrClosed.Error(),
			"Closed/CloseWhileBusy": "want nil or an error wrapping " + backend.ErrClosed.Error(),
		}, []string{"Closed/"}},
		{"KeepsLentKeys", keepsLentKeys, map[string]string{
			"Keys/Borrowed": "the backend kept the caller's string",
		}, []string{"Defender/", "Keys/"}},
		{"GetIgnoresExpiry", getIgnoresExpiry, map[string]string{
			"TTL/Expiry/GetExpired": "want Found == false",
			"TTL/GetNeverExtends":   "want absent",
			"Defender/Expiry":       "want Allowed",
		}, []string{"TTL/", "Defender/"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, coarse := range []bool{false, true} {
				if coarse && c.flaw == truncTTL {
					continue // its expiry falls on whole seconds: nothing to truncate
				}
				rep := runRef(coarse, 0, c.flaw)
				failed := rep.failed()
				t.Logf("coarse=%v: failed %q", coarse, failed)
				for rule, text := range c.must {
					msgs, ok := rep.failures[rule]
					if !ok {
						t.Errorf("coarse=%v: subtest %s passed, want it to fail; failures:\n%s", coarse, rule, rep)
						continue
					}
					if !strings.Contains(strings.Join(msgs, "\n"), text) {
						t.Errorf("coarse=%v: subtest %s failed with %q, want a message holding %q", coarse, rule, msgs, text)
					}
				}
			next:
				for _, name := range failed {
					if _, ok := c.must[name]; ok {
						continue
					}
					for _, p := range c.may {
						if strings.HasPrefix(name, p) {
							continue next
						}
					}
					t.Errorf("coarse=%v: subtest %s failed, which this flaw should not break: %q", coarse, name, rep.failures[name])
				}
			}
		})
	}
}

// TestRunHarness runs the exported entry point with the reference backend
// and a fake clock, as a third party with an injectable clock would.
func TestRunHarness(t *testing.T) {
	clk := newClock(0)
	RunHarness(t, Harness{
		Open: func(t *testing.T) backend.Backend {
			return newRef(clk.Now, false, 0)
		},
		Advance: clk.Advance,
		Now:     clk.Now,
	})
}

// TestRun runs the exported real-time entry point with the reference
// backend on the real clock: the suite's waits must be long enough for a
// store that only sees real time.
func TestRun(t *testing.T) {
	t.Parallel()
	Run(t, func(t *testing.T) backend.Backend {
		return newRef(time.Now, false, 0)
	})
}

func TestNilOpen(t *testing.T) {
	rec := newRecorder()
	rec.Run("", newSuite(nil, nil, nil).run)
	if msgs := rec.rep.failures[""]; len(msgs) != 1 || !strings.Contains(msgs[0], "Open is nil") {
		t.Fatalf("a suite with no Open: failures %q, want one naming Open", msgs)
	}
}
