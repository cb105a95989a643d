package auditlog

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"
)

// Default CoalescerOptions values.
const (
	// DefaultCoalesceMaxOpen is the default bound on open windows
	// (identities being coalesced at once). Each holds one record (at most
	// about 2 KiB with every field at its bound), so the default bounds
	// the memory at about 16 MiB, typically well under 2 MiB.
	DefaultCoalesceMaxOpen = 8192
	// DefaultCoalesceFanout is the default bound on the open windows that
	// share one IP, or one username (CoalescerOptions.MaxFanout).
	DefaultCoalesceFanout = 16
)

// CoalescerOptions configures a Coalescer. The zero value (or a nil
// pointer) takes the defaults.
type CoalescerOptions struct {
	// MaxOpen bounds the number of open windows. When a locked record of
	// an identity without an open window arrives and MaxOpen windows are
	// open, the oldest one is emitted at once, before its window ends
	// (never dropped). 0 means DefaultCoalesceMaxOpen.
	MaxOpen int
	// MaxFanout bounds the open windows that share one IP, and those that
	// share one username. A locked record of a new identity whose IP
	// already has MaxFanout open windows is counted in that IP's overflow
	// window instead, whose record has an empty Username and
	// CanonicalUsername; failing that, one whose username has MaxFanout
	// open windows (from as many IPs) is counted in that username's
	// overflow window, whose record has an empty IP. This keeps a blocked
	// client that rotates usernames (or a username attacked from many
	// addresses) to a bounded number of records per window. 0 means
	// DefaultCoalesceFanout.
	MaxFanout int
	// Now is the clock: the time given to a locked record whose Time is
	// zero, and the time against which the background goroutine closes
	// windows. Pass the engine's clock when it is not time.Now (windows
	// are measured in the records' times). Nil: time.Now.
	Now func() time.Time
}

// CoalescerStats is a snapshot of a Coalescer's counters. Open is a current
// level; the others count since the Coalescer was created.
type CoalescerStats struct {
	// Open is the number of open windows.
	Open int
	// Locked counts the locked records taken in (each counted once in the
	// Count of exactly one emitted record).
	Locked uint64
	// Emitted counts the records handed to the next Recorder for closed
	// windows (coalesced records, and lone locked records).
	Emitted uint64
	// Early counts the windows emitted before they ended because MaxOpen
	// windows were open.
	Early uint64
	// Overflowed counts the locked records counted in an IP's or a
	// username's overflow window (see CoalescerOptions.MaxFanout).
	Overflowed uint64
}

var _ Recorder = (*Coalescer)(nil)

// Coalescer is a Recorder that stands in front of another (typically the
// Writer) and turns a flood of locked attempts into a few records: the
// locked, unsuccessful records (Locked && !Success) of one identity (IP,
// canonical username and fail mode) within one window are handed on as ONE
// record whose Count says how many attempts it stands for, whose Time is
// the first attempt's and whose Until is the last one's. Every other
// record (failures and successes, Locked == false) passes straight through
// on the caller's goroutine: never coalesced, never delayed.
//
// A window opens with the first locked record of an identity and lasts
// the window duration, measured in the records' times; it is emitted by
// the first record of the identity that falls after it, or by a
// background goroutine within a quarter of a window after it ends, or
// early when MaxOpen windows are open, or by Flush and Close. A locked
// flood of one identity thus costs one record per window. Records are
// never dropped: every locked record taken in is counted in exactly one
// emitted record (Stats().Locked equals the sum of Record.Attempts of what
// was emitted). The coalesced record keeps the first record's ID (empty
// if the engine left it to the Writer), typed Username, UserAgent, Path
// and Accept.
//
// Create one with NewCoalescer and stop it with Close before closing the
// next Recorder. Record is safe for concurrent use and, for a locked
// record of an identity whose window is open, does not allocate.
type Coalescer struct {
	next   Recorder
	window int64 // nanoseconds
	opts   CoalescerOptions
	now    func() time.Time

	stop     chan struct{}
	done     chan struct{}
	stopTick func()

	mu         sync.Mutex
	closed     bool
	open       map[coalesceKey]*coalWindow
	ends       endHeap       // the open windows, the one ending first at the root
	free       []*coalWindow // recycled windows
	seq        uint64        // opening order, to break ties in ends
	ipFan      map[string]int
	userFan    map[string]int
	locked     uint64
	emitted    uint64
	early      uint64
	overflowed uint64
	sweep      []Record // the goroutine's buffer
}

// coalesceKey is an identity. kind tells a plain identity from the
// overflow windows of an IP or a username.
type coalesceKey struct {
	ip, user, failMode string
	kind               uint8
}

const (
	kindIdentity uint8 = iota
	kindIPOverflow
	kindUserOverflow
)

// coalWindow is one open window.
type coalWindow struct {
	key         coalesceKey
	rec         Record // the first record, as taken in
	first, last int64  // unix nanoseconds
	end         int64  // first + window
	seq         uint64
	attempts    int64
	records     int64
	index       int // in Coalescer.ends
}

// endHeap orders the open windows by end, then by opening order.
type endHeap []*coalWindow

func (h endHeap) Len() int { return len(h) }
func (h endHeap) Less(i, j int) bool {
	if h[i].end != h[j].end {
		return h[i].end < h[j].end
	}
	return h[i].seq < h[j].seq
}
func (h endHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *endHeap) Push(x any) {
	w := x.(*coalWindow)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *endHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return w
}

// NewCoalescer returns a running Coalescer that hands records to next and
// coalesces locked records per identity and window (DEFENDER_AUDIT_COALESCE_WINDOW,
// typically one second). opts may be nil. The errors wrap ErrInvalidConfig
// and name the bad parameter.
func NewCoalescer(next Recorder, window time.Duration, opts *CoalescerOptions) (*Coalescer, error) {
	t := time.NewTicker(max(window/4, time.Millisecond))
	c, err := newCoalescer(next, window, opts, t.C, t.Stop)
	if err != nil {
		t.Stop()
	}
	return c, err
}

// newCoalescer is NewCoalescer with the ticks of the background goroutine
// given (tests drive it by hand).
func newCoalescer(next Recorder, window time.Duration, opts *CoalescerOptions, tick <-chan time.Time, stopTick func()) (*Coalescer, error) {
	if next == nil {
		return nil, fmt.Errorf("%w: the coalescer's next Recorder is nil", ErrInvalidConfig)
	}
	if window <= 0 {
		return nil, fmt.Errorf("%w: coalescing window %v must be positive (DEFENDER_AUDIT_COALESCE_WINDOW)", ErrInvalidConfig, window)
	}
	var o CoalescerOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxOpen < 0 {
		return nil, fmt.Errorf("%w: CoalescerOptions.MaxOpen is negative", ErrInvalidConfig)
	}
	if o.MaxFanout < 0 {
		return nil, fmt.Errorf("%w: CoalescerOptions.MaxFanout is negative", ErrInvalidConfig)
	}
	if o.MaxOpen == 0 {
		o.MaxOpen = DefaultCoalesceMaxOpen
	}
	if o.MaxFanout == 0 {
		o.MaxFanout = DefaultCoalesceFanout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Coalescer{
		next:     next,
		window:   int64(window),
		opts:     o,
		now:      o.Now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		stopTick: stopTick,
		open:     make(map[coalesceKey]*coalWindow),
		ipFan:    make(map[string]int),
		userFan:  make(map[string]int),
	}
	go c.run(tick)
	return c, nil
}

// Record hands r to the next Recorder at once, unless r is locked and not
// a success: then it is counted in its identity's open window (opening one
// if needed). A locked record with a zero Time gets the Coalescer's clock.
// After Close, every record passes straight through.
func (c *Coalescer) Record(r Record) {
	if !r.Locked || r.Success {
		c.next.Record(r)
		return
	}
	if r.Time.IsZero() {
		r.Time = c.now()
	}
	t := r.Time.UnixNano()
	k := coalesceKey{ip: r.IP, user: r.CanonicalUsername, failMode: r.FailMode}
	if k.user == "" {
		k.user = r.Username
	}
	c.mu.Lock()
	if w := c.open[k]; w != nil && t < w.end {
		// The hot path: a repeat locked record of an open identity (after
		// Close no window is open).
		w.add(t, &r)
		c.locked++
		c.mu.Unlock()
		return
	}
	if c.closed {
		c.mu.Unlock()
		c.next.Record(r)
		return
	}
	out, n := c.open1(k, t, &r)
	c.mu.Unlock()
	c.emit(out[:n])
}

// open1 counts r, a locked record of identity k taken in at t, in a new
// window (or in an overflow window), and returns the windows it had to
// close: k's own ended window, an ended overflow window, the oldest window
// when MaxOpen are open. c.mu is held.
func (c *Coalescer) open1(k coalesceKey, t int64, r *Record) (out [3]Record, n int) {
	c.locked++
	if w := c.open[k]; w != nil {
		out[n] = c.take(w)
		n++
	}
	switch {
	case c.ipFan[k.ip] >= c.opts.MaxFanout:
		k = coalesceKey{ip: k.ip, failMode: k.failMode, kind: kindIPOverflow}
		r.Username, r.CanonicalUsername = "", ""
	case c.userFan[k.user] >= c.opts.MaxFanout:
		k = coalesceKey{user: k.user, failMode: k.failMode, kind: kindUserOverflow}
		r.IP = ""
	}
	if k.kind != kindIdentity {
		c.overflowed++
		if w := c.open[k]; w != nil {
			if t < w.end {
				w.add(t, r)
				return out, n
			}
			out[n] = c.take(w)
			n++
		}
	}
	if len(c.open) >= c.opts.MaxOpen {
		out[n] = c.take(c.ends[0])
		n++
		c.early++
	}
	c.insert(k, t, r)
	return out, n
}

// add counts r (taken in at t) in w.
func (w *coalWindow) add(t int64, r *Record) {
	w.attempts += r.Attempts()
	w.records++
	last := t
	if !r.Until.IsZero() {
		last = max(last, r.Until.UnixNano())
	}
	if last > w.last {
		w.last = last
	}
	if t < w.first {
		w.first = t
	}
}

// insert opens a window for k with r. c.mu is held.
func (c *Coalescer) insert(k coalesceKey, t int64, r *Record) {
	var w *coalWindow
	if n := len(c.free); n > 0 {
		w, c.free = c.free[n-1], c.free[:n-1]
	} else {
		w = new(coalWindow)
	}
	c.seq++
	*w = coalWindow{key: k, rec: *r, first: t, last: t, end: t + c.window, seq: c.seq}
	w.add(t, r)
	heap.Push(&c.ends, w)
	c.open[k] = w
	if k.kind == kindIdentity {
		c.ipFan[k.ip]++
		c.userFan[k.user]++
	}
}

// take closes w and returns its record. c.mu is held.
func (c *Coalescer) take(w *coalWindow) Record {
	heap.Remove(&c.ends, w.index)
	delete(c.open, w.key)
	if w.key.kind == kindIdentity {
		decr(c.ipFan, w.key.ip)
		decr(c.userFan, w.key.user)
	}
	r := w.rec
	if w.records > 1 {
		r.Count = w.attempts
		r.Time = time.Unix(0, w.first).UTC()
		r.Until = time.Unix(0, w.last).UTC()
	}
	c.emitted++
	*w = coalWindow{}
	c.free = append(c.free, w)
	return r
}

func decr(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}

// emit hands records to the next Recorder (without c.mu held).
func (c *Coalescer) emit(rs []Record) {
	for i := range rs {
		c.next.Record(rs[i])
	}
}

// run is the background goroutine: it emits the windows that have ended.
func (c *Coalescer) run(tick <-chan time.Time) {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-tick:
			c.expire(c.now().UnixNano())
		}
	}
}

// expire emits the windows that end at or before now, in the order they
// end.
func (c *Coalescer) expire(now int64) {
	c.mu.Lock()
	buf := c.sweep[:0]
	for len(c.ends) > 0 && c.ends[0].end <= now {
		buf = append(buf, c.take(c.ends[0]))
	}
	c.mu.Unlock()
	c.emit(buf)
	clear(buf)
	c.sweep = buf[:0]
}

// Flush emits every open window now, ended or not.
func (c *Coalescer) Flush() {
	c.mu.Lock()
	buf := c.takeAll()
	c.mu.Unlock()
	c.emit(buf)
}

// takeAll closes every window. c.mu is held.
func (c *Coalescer) takeAll() []Record {
	buf := make([]Record, 0, len(c.open))
	for len(c.ends) > 0 {
		buf = append(buf, c.take(c.ends[0]))
	}
	return buf
}

// Close stops the Coalescer: later records pass straight through to the
// next Recorder, the background goroutine is stopped (Close waits for it
// while ctx lasts) and every open window is emitted. It does not close
// the next Recorder: close that afterwards. It returns ctx's error if the
// goroutine had not stopped when ctx ended (the windows are emitted
// regardless), and ErrClosed when called again.
func (c *Coalescer) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closed = true
	buf := c.takeAll()
	c.mu.Unlock()
	close(c.stop)
	if c.stopTick != nil {
		c.stopTick()
	}
	c.emit(buf)
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the Coalescer's counters.
func (c *Coalescer) Stats() CoalescerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CoalescerStats{Open: len(c.open), Locked: c.locked, Emitted: c.emitted, Early: c.early, Overflowed: c.overflowed}
}
