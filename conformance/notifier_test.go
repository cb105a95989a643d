package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// This file proves that RunNotifier has teeth: a correct reference notifier
// (an in-process hub per namespace) passes it, and broken variants fail it,
// each in the subtests of the rule it breaks.

// nflaw is a deliberate bug of the reference notifier.
type nflaw int

const (
	// dropLast drops the last key of an announcement of several keys.
	dropLast nflaw = 1 << iota
	// notSelf does not deliver to the subscriptions of the announcing
	// backend.
	notSelf
	// noReady never calls the first onReset.
	noReady
	// oneHub puts every namespace on one hub.
	oneHub
	// stopLeaks leaves a stopped subscription on the hub: its callbacks go
	// on (called by Notify itself, so that the suite sees them at once).
	stopLeaks
	// resetOnStop calls onReset when stopped.
	resetOnStop
	// concurrent runs each callback on a goroutine of its own.
	concurrent
	// noCloseReset ends subscriptions on Close without the last onReset.
	noCloseReset
	// noCheck accepts invalid keys and nil callbacks, and ignores the
	// context.
	noCheck
	// notifyAfterClose lets Notify and Subscribe work after Close.
	notifyAfterClose
	// subscribeFails fails every Subscribe.
	subscribeFails
	// nilStop returns a nil stop function.
	nilStop
	// earlyKey calls onKey before the first onReset.
	earlyKey
	// doubleReady calls onReset twice when established.
	doubleReady
	// notifyFails fails every Notify.
	notifyFails
	// spuriousReset follows every announcement with an onReset.
	spuriousReset
	// closeKeeps leaves the subscriptions of a closed backend running,
	// without the last onReset.
	closeKeeps
	// stopHangs makes stop after Close take three times the suite's wait.
	stopHangs
	// foreignKey adds a key nobody announced to every announcement.
	foreignKey
)

// hub is a namespace of the reference notifier.
type hub struct {
	mu   sync.Mutex
	subs map[*refSub]bool
}

func newHub() *hub { return &hub{subs: map[*refSub]bool{}} }

// refNotifier is the reference backend with a Notifier on a hub.
type refNotifier struct {
	*ref
	hub   *hub
	flaws nflaw
	wait  time.Duration // the suite's wait, for stopHangs

	mu     sync.Mutex
	closed bool
	subs   map[*refSub]bool
}

// refSub is one subscription: a goroutine running queued callbacks in order.
type refSub struct {
	owner   *refNotifier
	flaws   nflaw
	onKey   func(string)
	onReset func()
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []func()
	ended   bool
	leaked  bool // stopped or closed, but still on the hub (stopLeaks, closeKeeps)
	done    chan struct{}
}

func (s *refSub) push(f func()) {
	s.mu.Lock()
	leaked := s.leaked
	s.mu.Unlock()
	if leaked {
		f()
		return
	}
	if s.flaws&concurrent != 0 {
		go f()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.queue = append(s.queue, f)
		s.cond.Signal()
	}
}

func (s *refSub) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.ended {
			s.cond.Wait()
		}
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		f := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		f()
	}
}

// end stops the subscription after last (if not nil), dropping what is
// still queued.
func (s *refSub) end(last func()) {
	s.mu.Lock()
	if !s.ended {
		s.queue = s.queue[:0]
		if last != nil {
			s.queue = append(s.queue, last)
		}
		s.ended = true
		s.cond.Signal()
	}
	s.mu.Unlock()
	<-s.done
}

func (n *refNotifier) Notify(ctx context.Context, keys ...string) error {
	if n.flaws&notifyFails != 0 {
		return errBoom
	}
	n.mu.Lock()
	closed := n.closed && n.flaws&notifyAfterClose == 0
	n.mu.Unlock()
	if closed {
		return backend.ErrClosed
	}
	if n.flaws&noCheck == 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := backend.CheckKeys(keys); err != nil {
			return err
		}
	}
	if len(keys) > 1 && n.flaws&dropLast != 0 {
		keys = keys[:len(keys)-1]
	}
	keys = append([]string(nil), keys...)
	if n.flaws&foreignKey != 0 {
		keys = append(keys, "zz:foreign")
	}
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	for s := range n.hub.subs {
		if s.owner == n && n.flaws&notSelf != 0 {
			continue
		}
		for _, k := range keys {
			s.push(func() { s.onKey(k) })
		}
		if n.flaws&spuriousReset != 0 {
			s.push(s.onReset)
		}
	}
	return nil
}

func (n *refNotifier) Subscribe(onKey func(string), onReset func()) (func(), error) {
	if n.flaws&subscribeFails != 0 {
		return nil, errBoom
	}
	if onKey == nil || onReset == nil {
		if n.flaws&noCheck == 0 {
			return nil, fmt.Errorf("%w: nil callback", backend.ErrInvalid)
		}
		onKey, onReset = func(string) {}, func() {}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed && n.flaws&notifyAfterClose == 0 {
		return nil, backend.ErrClosed
	}
	s := &refSub{owner: n, flaws: n.flaws, onKey: onKey, onReset: onReset, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	n.subs[s] = true
	n.hub.mu.Lock()
	n.hub.subs[s] = true
	if n.flaws&earlyKey != 0 {
		s.push(func() { s.onKey("early") })
	}
	if n.flaws&noReady == 0 {
		s.push(s.onReset)
	}
	if n.flaws&doubleReady != 0 {
		s.push(s.onReset)
	}
	n.hub.mu.Unlock()
	go s.run()
	if n.flaws&nilStop != 0 {
		return nil, nil
	}
	var once sync.Once
	stop := func() {
		n.mu.Lock()
		hang := n.closed && n.flaws&stopHangs != 0
		n.mu.Unlock()
		if hang {
			time.Sleep(3 * n.wait)
		}
		once.Do(func() {
			n.mu.Lock()
			delete(n.subs, s)
			n.mu.Unlock()
			if n.flaws&stopLeaks != 0 {
				s.mu.Lock()
				s.leaked = true
				s.mu.Unlock()
				return
			}
			n.hub.mu.Lock()
			delete(n.hub.subs, s)
			n.hub.mu.Unlock()
			var last func()
			if n.flaws&resetOnStop != 0 {
				last = s.onReset
			}
			s.end(last)
		})
	}
	return stop, nil
}

func (n *refNotifier) Close() error {
	n.mu.Lock()
	n.closed = true
	subs := n.subs
	n.subs = map[*refSub]bool{}
	n.mu.Unlock()
	for s := range subs {
		n.hub.mu.Lock()
		delete(n.hub.subs, s)
		n.hub.mu.Unlock()
		if n.flaws&closeKeeps != 0 {
			n.hub.mu.Lock()
			n.hub.subs[s] = true
			n.hub.mu.Unlock()
			s.mu.Lock()
			s.leaked = true // delivered at once, so that the suite sees it
			s.mu.Unlock()
			continue
		}
		last := s.onReset
		if n.flaws&noCloseReset != 0 {
			last = nil
		}
		s.end(last)
	}
	return n.ref.Close()
}

// runRefNotifier runs the suite on a recorder against reference notifiers
// with the given flaws and returns the report.
func runRefNotifier(flaws nflaw) *report {
	shared := newHub()
	open := func(tb) (a, b backend.Backend) {
		h := newHub()
		if flaws&oneHub != 0 {
			h = shared
		}
		mk := func() *refNotifier {
			return &refNotifier{ref: newRef(time.Now, false, 0), hub: h, flaws: flaws, wait: time.Second, subs: map[*refSub]bool{}}
		}
		return mk(), mk()
	}
	rec := newRecorder()
	rec.Run("", func(t tb) { runNotifier(t, open, time.Second) })
	return rec.rep
}

func TestNotifierReferencePasses(t *testing.T) {
	t.Parallel()
	if rep := runRefNotifier(0); len(rep.failed()) != 0 {
		t.Errorf("the reference notifier failed:\n%s", rep)
	}
}

func TestNotifierTeeth(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		flaw nflaw
		must map[string]string // subtest -> a text its failure must hold
		may  []string          // prefixes of other subtests allowed to fail
	}{
		{"DropLast", dropLast, map[string]string{
			"Delivery": "delivery of", "Order": "delivery of", "Keys": "delivery of",
		}, []string{"OneAtATime"}},
		{"NotSelf", notSelf, map[string]string{
			"Delivery": "subscription on a: delivery of",
		}, []string{"Several", "Close", "Stop"}},
		{"NoReady", noReady, map[string]string{
			"Ready": "the first onReset",
		}, []string{""}},
		{"OneHub", oneHub, map[string]string{
			"Isolation": "want exactly",
		}, nil},
		{"StopLeaks", stopLeaks, map[string]string{
			"Stop": "callbacks after stop returned",
		}, []string{"Several"}},
		{"ResetOnStop", resetOnStop, map[string]string{
			"Stop": "stop calls no onReset",
		}, []string{"Several"}},
		{"Concurrent", concurrent, map[string]string{
			"OneAtATime": "at the same time",
		}, []string{""}},
		{"NoCloseReset", noCloseReset, map[string]string{
			"Close": "one last onReset by Close",
		}, nil},
		{"NoCheck", noCheck, map[string]string{
			"Invalid": "want backend: invalid argument",
			"Cancel":  "want context canceled",
		}, nil},
		{"SubscribeFails", subscribeFails, map[string]string{
			"Ready": "Subscribe: boom",
		}, []string{""}},
		{"NilStop", nilStop, map[string]string{
			"Ready": "nil stop function",
		}, []string{""}},
		{"EarlyKey", earlyKey, map[string]string{
			"Ready": "before the first onReset",
		}, []string{""}},
		{"DoubleReady", doubleReady, map[string]string{
			"Ready":    "want once",
			"Delivery": "in a quiet test",
		}, []string{""}},
		{"NotifyFails", notifyFails, map[string]string{
			"Delivery":   "Notify(",
			"OneAtATime": "Notify from one of 8 goroutines: boom",
		}, []string{""}},
		{"SpuriousReset", spuriousReset, map[string]string{
			"Delivery": "in a quiet test",
		}, []string{""}},
		{"CloseKeeps", closeKeeps, map[string]string{
			"Close": "callbacks after Close returned",
		}, nil},
		{"StopHangs", stopHangs, map[string]string{
			"Close": "stop after Close did not return",
		}, nil},
		{"ForeignKey", foreignKey, map[string]string{
			"OneAtATime": "which was never announced",
		}, []string{""}},
		{"OpenAfterClose", notifyAfterClose, map[string]string{
			"Close": "after Close: err = <nil>",
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rep := runRefNotifier(c.flaw)
			wantFailures(t, rep, c.must)
		next:
			for _, name := range rep.failed() {
				if _, ok := c.must[name]; ok {
					continue
				}
				for _, p := range c.may {
					if strings.HasPrefix(name, p) {
						continue next
					}
				}
				t.Errorf("subtest %s failed, which this flaw should not break: %q", name, rep.failures[name])
			}
		})
	}
}

// TestRunNotifier runs the exported entry point with the reference.
func TestRunNotifier(t *testing.T) {
	t.Parallel()
	RunNotifier(t, func(t *testing.T) (a, b backend.Backend) {
		h := newHub()
		return &refNotifier{ref: newRef(time.Now, false, 0), hub: h, subs: map[*refSub]bool{}},
			&refNotifier{ref: newRef(time.Now, false, 0), hub: h, subs: map[*refSub]bool{}}
	})
}

// TestRunNotifierMisuse: no open function, a nil backend, a backend without
// Notifier, and a Close that fails are reported.
func TestRunNotifierMisuse(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.Run("", func(t tb) { runNotifier(t, nil, time.Second) })
	if msgs := rec.rep.failures[""]; len(msgs) != 1 || !strings.Contains(msgs[0], "needs an open function") {
		t.Errorf("no open function: failures %q", msgs)
	}
	for _, tc := range []struct {
		name string
		open func(tb) (a, b backend.Backend)
		want string
	}{
		{"nil", func(tb) (a, b backend.Backend) { return nil, newRef(time.Now, false, 0) }, "nil Backend"},
		{"not a Notifier", func(tb) (a, b backend.Backend) {
			return newRef(time.Now, false, 0), newRef(time.Now, false, 0)
		}, "must both implement backend.Notifier"},
		{"Close fails", func(tb) (a, b backend.Backend) {
			h := newHub()
			return &failClose{&refNotifier{ref: newRef(time.Now, false, 0), hub: h, subs: map[*refSub]bool{}}},
				&refNotifier{ref: newRef(time.Now, false, 0), hub: h, subs: map[*refSub]bool{}}
		}, "Close at the end of the subtest"},
	} {
		rec := newRecorder()
		rec.Run("", func(t tb) { runNotifier(t, tc.open, time.Second) })
		if msgs := rec.rep.failures["Ready"]; !strings.Contains(strings.Join(msgs, "\n"), tc.want) {
			t.Errorf("%s: Ready failed with %q, want a message holding %q", tc.name, msgs, tc.want)
		}
	}
}

// failClose is a notifier whose Close fails.
type failClose struct{ *refNotifier }

func (f *failClose) Close() error {
	_ = f.refNotifier.Close()
	return errors.New("close failed")
}
