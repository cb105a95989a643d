package conformance

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// notifyWait bounds every wait of RunNotifier for a callback: far above what
// a working store takes (milliseconds), so that only a lost announcement or
// a subscription that never starts fails a check.
const notifyWait = 15 * time.Second

// RunNotifier checks that the backends open returns obey the
// backend.Notifier contract. Each call of open returns two backends on one
// store and in one namespace, as two processes sharing the store would open
// them, in a namespace of their own: announcements made through the pair of
// one call must never reach the pair of another call. Both must implement
// backend.Notifier. The suite closes both when the subtest ends; open must
// not close them itself, and may call t.Fatal when the store cannot be
// reached.
//
// Every rule is a subtest:
//
//   - Ready: a subscription calls onReset once established, and no onKey
//     before it (Subscribe returns at once; the first onReset is the sign
//     that the subscription is live).
//   - Delivery: an announcement through either backend reaches the
//     subscribers of both, this process included, each key once, in order.
//   - Order: 50 announcements made one after the other arrive in that
//     order; one announcement of 100 keys arrives whole, in order.
//   - Keys: keys made of every printable byte, and keys of
//     backend.MaxKeyLen bytes, arrive byte for byte.
//   - Isolation: announcements of another namespace (another call of open)
//     never arrive.
//   - Several: two subscriptions on one backend each get everything; the
//     end of one does not end the other.
//   - OneAtATime: the callbacks of one subscription never overlap, and the
//     announcements of each of 8 concurrent announcers arrive in order.
//   - Stop: no callback runs after stop returns, stop calls no onReset,
//     and a second stop returns at once.
//   - Close: Close of a backend ends its subscriptions with one last
//     onReset before Close returns, and nothing after; stop afterwards
//     returns at once; the other backend's subscriptions go on. Notify and
//     Subscribe after Close fail with backend.ErrClosed.
//   - Invalid: Notify with a key that breaks the key rules fails with
//     backend.ErrInvalid, Notify with no keys is a no-op, and Subscribe
//     with a nil callback fails with backend.ErrInvalid.
//   - Cancel: Notify with an ended context fails with an error wrapping
//     ctx.Err() or backend.ErrUnavailable.
//
// A working subscription is not expected to be interrupted during the
// suite: an onReset other than the first (and the last one on Close) fails
// the check it happens in.
func RunNotifier(t *testing.T, open func(t *testing.T) (a, b backend.Backend)) {
	t.Helper()
	var o func(t tb) (a, b backend.Backend)
	if open != nil {
		o = func(t tb) (a, b backend.Backend) { return open(t.(stdT).T) }
	}
	runNotifier(stdT{t}, o, notifyWait)
}

type notifierCheck struct {
	name string
	fn   func(t tb, p *pair)
}

// pair is what one call of open gave, as Notifiers.
type pair struct {
	open func(t tb) *pair
	a, b backend.Notifier
	ca   backend.Backend // a, to close it
	wait time.Duration   // bound of every wait for a callback
}

// runNotifier runs the checks; wait bounds every wait for a callback. (Every
// tb's Fatalf ends the goroutine, so nothing follows it.)
func runNotifier(t tb, open func(t tb) (a, b backend.Backend), wait time.Duration) {
	t.Helper()
	if open == nil {
		t.Fatalf("conformance: RunNotifier needs an open function")
	}
	var openPair func(t tb) *pair
	openPair = func(t tb) *pair {
		t.Helper()
		a, b := open(t)
		for _, x := range []backend.Backend{a, b} {
			if x == nil {
				t.Fatalf("conformance: open returned a nil Backend")
			}
			t.Cleanup(func() {
				if err := x.Close(); err != nil {
					t.Errorf("Close at the end of the subtest: %v", err)
				}
			})
		}
		na, ok1 := a.(backend.Notifier)
		nb, ok2 := b.(backend.Notifier)
		if !ok1 || !ok2 {
			t.Fatalf("conformance: %T and %T must both implement backend.Notifier", a, b)
		}
		return &pair{open: openPair, a: na, b: nb, ca: a, wait: wait}
	}
	checks := []notifierCheck{
		{"Ready", notifyReady},
		{"Delivery", notifyDelivery},
		{"Order", notifyOrder},
		{"Keys", notifyKeys},
		{"Isolation", notifyIsolation},
		{"Several", notifySeveral},
		{"OneAtATime", notifyOneAtATime},
		{"Stop", notifyStop},
		{"Close", notifyClose},
		{"Invalid", notifyInvalid},
		{"Cancel", notifyCancel},
	}
	for _, c := range checks {
		t.Run(c.name, func(t tb) {
			c.fn(t, openPair(t))
		})
	}
}

// listener records the callbacks of one subscription.
type listener struct {
	name    string
	limit   time.Duration // bound of every wait
	stop    func()
	busy    atomic.Int32
	overlap atomic.Bool
	changed chan struct{} // one token after any event

	mu     sync.Mutex
	keys   []string // every key, in order
	resets []int    // len(keys) at each onReset
}

func (l *listener) enter() {
	if l.busy.Add(1) != 1 {
		l.overlap.Store(true)
	}
}

func (l *listener) leave() {
	l.busy.Add(-1)
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *listener) onKey(k string) {
	l.enter()
	runtime.Gosched() // a wider window for an overlapping callback to show
	l.mu.Lock()
	l.keys = append(l.keys, k)
	l.mu.Unlock()
	l.leave()
}

func (l *listener) onReset() {
	l.enter()
	l.mu.Lock()
	l.resets = append(l.resets, len(l.keys))
	l.mu.Unlock()
	l.leave()
}

// state returns copies of what l recorded.
func (l *listener) state() (keys []string, resets []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.keys...), append([]int(nil), l.resets...)
}

// wait waits until cond holds for what l recorded, or fails the test
// saying what was awaited.
func (l *listener) wait(t tb, what string, cond func(keys []string, resets []int) bool) {
	t.Helper()
	deadline := time.NewTimer(l.limit)
	defer deadline.Stop()
	for {
		if cond(l.state()) {
			return
		}
		select {
		case <-l.changed:
		case <-deadline.C:
			keys, resets := l.state()
			t.Fatalf("%s: %s did not happen within %v (keys %s, onReset after keys %v)", l.name, what, l.limit, short(keys), resets)
		}
	}
}

// short shows a list of keys in a failure message, cut when long.
func short(keys []string) string {
	if len(keys) > 12 {
		return fmt.Sprintf("%q ... (%d keys)", keys[:12], len(keys))
	}
	return fmt.Sprintf("%q", keys)
}

// subscribe subscribes a listener to n, waits for its first onReset, and
// checks that no key came before it. The subscription is stopped when the
// subtest ends.
func subscribe(t tb, p *pair, name string, n backend.Notifier) *listener {
	t.Helper()
	l := &listener{name: name, limit: p.wait, changed: make(chan struct{}, 1)}
	stop, err := n.Subscribe(l.onKey, l.onReset)
	if err != nil {
		t.Fatalf("%s: Subscribe: %v", name, err)
	}
	if stop == nil {
		t.Fatalf("%s: Subscribe returned a nil stop function", name)
	}
	l.stop = stop
	t.Cleanup(stop)
	l.wait(t, "the first onReset (the subscription being established)", func(_ []string, resets []int) bool { return len(resets) > 0 })
	if keys, _ := l.state(); len(keys) > 0 {
		t.Errorf("%s: onKey(%q) before the first onReset, with nothing announced", name, keys)
	}
	return l
}

// notify announces keys through n, failing the test on an error.
func notify(t tb, n backend.Notifier, keys ...string) {
	t.Helper()
	if err := n.Notify(ctx(t), keys...); err != nil {
		t.Fatalf("Notify(%s): %v", short(keys), err)
	}
}

// receive waits until l has received want after the keys it had at from,
// then checks that exactly want arrived in that span, in order, with no
// onReset since its first one. It returns len(keys) after want.
func receive(t tb, l *listener, from int, want ...string) int {
	t.Helper()
	l.wait(t, fmt.Sprintf("delivery of %s", short(want)), func(keys []string, _ []int) bool { return len(keys) >= from+len(want) })
	keys, resets := l.state()
	got := keys[from:]
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("%s: received %s, want exactly %s in this order", l.name, short(got), short(want))
	}
	if len(resets) > 1 {
		t.Errorf("%s: onReset %d times (after keys %v) in a quiet test: the subscription was interrupted, or onReset is spurious", l.name, len(resets), resets)
	}
	return from + len(want)
}

func notifyReady(t tb, p *pair) {
	l := subscribe(t, p, "subscription on a", p.a)
	if _, resets := l.state(); len(resets) != 1 {
		t.Errorf("onReset called %d times when the subscription was established, want once", len(resets))
	}
}

func notifyDelivery(t tb, p *pair) {
	la := subscribe(t, p, "subscription on a", p.a)
	lb := subscribe(t, p, "subscription on b", p.b)
	notify(t, p.a, "d:1", "d:2")
	na := receive(t, la, 0, "d:1", "d:2")
	nb := receive(t, lb, 0, "d:1", "d:2")
	notify(t, p.b, "d:3")
	receive(t, la, na, "d:3")
	receive(t, lb, nb, "d:3")
}

func notifyOrder(t tb, p *pair) {
	l := subscribe(t, p, "subscription on b", p.b)
	var want []string
	for i := range 50 {
		keys := []string{fmt.Sprintf("o:%d", i)}
		if i%3 == 0 {
			keys = append(keys, fmt.Sprintf("o:%d:x", i), fmt.Sprintf("o:%d:y", i))
		}
		notify(t, p.a, keys...)
		want = append(want, keys...)
	}
	n := receive(t, l, 0, want...)
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("m:%03d", i))
	}
	notify(t, p.a, many...)
	receive(t, l, n, many...)
}

func notifyKeys(t tb, p *pair) {
	l := subscribe(t, p, "subscription on b", p.b)
	keys := oddKeys()
	notify(t, p.a, keys...)
	n := receive(t, l, 0, keys...)
	for _, k := range keys {
		notify(t, p.a, k)
	}
	receive(t, l, n, keys...)
}

func notifyIsolation(t tb, p *pair) {
	q := p.open(t)
	l1 := subscribe(t, p, "subscription in namespace 1", p.b)
	l2 := subscribe(t, p, "subscription in namespace 2", q.b)
	notify(t, p.a, "i:1")
	n1 := receive(t, l1, 0, "i:1")
	notify(t, q.a, "i:2")
	n2 := receive(t, l2, 0, "i:2")
	// Once more each way: an announcement that leaked would have arrived
	// before the next one of its own namespace.
	notify(t, p.a, "i:3")
	receive(t, l1, n1, "i:3")
	notify(t, q.a, "i:4")
	receive(t, l2, n2, "i:4")
}

func notifySeveral(t tb, p *pair) {
	l1 := subscribe(t, p, "first subscription on a", p.a)
	l2 := subscribe(t, p, "second subscription on a", p.a)
	notify(t, p.b, "s:1")
	n1 := receive(t, l1, 0, "s:1")
	receive(t, l2, 0, "s:1")
	l2.stop()
	notify(t, p.b, "s:2")
	receive(t, l1, n1, "s:2")
}

func notifyOneAtATime(t tb, p *pair) {
	l := subscribe(t, p, "subscription on b", p.b)
	const announcers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, announcers)
	c := ctx(t)
	for w := range announcers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := p.a.Notify(c, fmt.Sprintf("c:%d:%d:a", w, i), fmt.Sprintf("c:%d:%d:b", w, i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Notify from one of %d goroutines: %v", announcers, err)
	}
	l.wait(t, fmt.Sprintf("delivery of %d keys", 2*announcers*each), func(keys []string, _ []int) bool { return len(keys) >= 2*announcers*each })
	if l.overlap.Load() {
		t.Errorf("callbacks of one subscription ran at the same time: they must run one at a time")
	}
	keys, _ := l.state()
	got := make([][]string, announcers) // the keys of each announcer, in arrival order
	for _, k := range keys {
		var w int
		if _, err := fmt.Sscanf(k, "c:%d:", &w); err != nil || w < 0 || w >= announcers {
			t.Errorf("received %q, which was never announced", k)
			continue
		}
		got[w] = append(got[w], k)
	}
	for w := range announcers {
		var want []string
		for i := range each {
			want = append(want, fmt.Sprintf("c:%d:%d:a", w, i), fmt.Sprintf("c:%d:%d:b", w, i))
		}
		if strings.Join(got[w], " ") != strings.Join(want, " ") {
			t.Errorf("announcer %d: received %s, want %s: the announcements of one caller arrive in the order it made them, each key once", w, short(got[w]), short(want))
		}
	}
}

func notifyStop(t tb, p *pair) {
	la := subscribe(t, p, "stopped subscription on a", p.a)
	lb := subscribe(t, p, "subscription on b", p.b)
	la.stop()
	keys, resets := la.state()
	la.stop() // idempotent
	notify(t, p.a, "t:1")
	notify(t, p.b, "t:2")
	receive(t, lb, 0, "t:1", "t:2")
	k2, r2 := la.state()
	if len(k2) != len(keys) || len(r2) != len(resets) {
		t.Errorf("callbacks after stop returned: keys %s (were %s), onReset after keys %v (was %v)", short(k2), short(keys), r2, resets)
	}
	if len(resets) != 1 {
		t.Errorf("onReset %d times by the time stop returned, want only the first: stop calls no onReset", len(resets))
	}
}

func notifyClose(t tb, p *pair) {
	la := subscribe(t, p, "subscription on a", p.a)
	lb := subscribe(t, p, "subscription on b", p.b)
	if err := p.ca.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	keys, resets := la.state()
	if len(resets) != 2 || resets[1] != len(keys) {
		t.Errorf("when Close returned, the subscription on a had onReset after keys %v with %d keys: want one onReset when established and one last onReset by Close", resets, len(keys))
	}
	notify(t, p.b, "x:1")
	receive(t, lb, 0, "x:1")
	if k2, r2 := la.state(); len(k2) != len(keys) || len(r2) != len(resets) {
		t.Errorf("callbacks after Close returned: keys %s, onReset after keys %v", short(k2), r2)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		la.stop()
	}()
	select {
	case <-done:
	case <-time.After(p.wait):
		t.Fatalf("stop after Close did not return within %v", p.wait)
	}
	if err := p.a.Notify(ctx(t), "x:2"); !isErr(err, backend.ErrClosed) {
		t.Errorf("Notify after Close: err = %v, want %v", err, backend.ErrClosed)
	}
	stop, err := p.a.Subscribe(func(string) {}, func() {})
	if !isErr(err, backend.ErrClosed) {
		t.Errorf("Subscribe after Close: err = %v, want %v", err, backend.ErrClosed)
	}
	if stop != nil {
		stop()
	}
}

func notifyInvalid(t tb, p *pair) {
	c := ctx(t)
	long := strings.Repeat("k", backend.MaxKeyLen+1)
	for _, keys := range [][]string{{""}, {"a b"}, {"ok", "new\nline"}, {long}, {"é"}} {
		if err := p.a.Notify(c, keys...); !isErr(err, backend.ErrInvalid) {
			t.Errorf("Notify(%q): err = %v, want %v", keys, err, backend.ErrInvalid)
		}
	}
	if err := p.a.Notify(c); err != nil {
		t.Errorf("Notify with no keys: %v, want nil", err)
	}
	for _, cb := range []struct {
		name    string
		onKey   func(string)
		onReset func()
	}{
		{"nil onKey", nil, func() {}},
		{"nil onReset", func(string) {}, nil},
	} {
		stop, err := p.a.Subscribe(cb.onKey, cb.onReset)
		if !isErr(err, backend.ErrInvalid) {
			t.Errorf("Subscribe with %s: err = %v, want %v", cb.name, err, backend.ErrInvalid)
		}
		if stop != nil {
			stop()
		}
	}
}

func notifyCancel(t tb, p *pair) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.a.Notify(c, "n:1"); !isErr(err, context.Canceled, backend.ErrUnavailable) {
		t.Errorf("Notify with a cancelled context: err = %v, want %v or %v", err, context.Canceled, backend.ErrUnavailable)
	}
	d, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if err := p.a.Notify(d, "n:1"); !isErr(err, context.DeadlineExceeded, backend.ErrUnavailable) {
		t.Errorf("Notify with an expired deadline: err = %v, want %v or %v", err, context.DeadlineExceeded, backend.ErrUnavailable)
	}
}
