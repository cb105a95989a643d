package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-defender/defender/backend"
)

// DefaultMaxKeys is the bound on live keys used when Options.MaxKeys is 0.
const DefaultMaxKeys = 1 << 20

// DefaultSweepInterval is how often the background sweeper removes expired
// keys when Options.SweepInterval is 0.
const DefaultSweepInterval = 30 * time.Second

// DefaultScanLimit is the page size of Scan when its limit is <= 0.
const DefaultScanLimit = 1000

const (
	maxShards   = 64
	minPerShard = 32 // fewer shards for small bounds, so that no shard is tiny
	// classes is the number of eviction classes: a counter's class is its
	// count, from 1 to classes-2; counts <= 0 share class 0 and counts >=
	// classes-1 the last class.
	classes = 64
	// burstGap is the quiet time after which a new eviction (or refusal) is
	// logged again; warnGap is the longest a burst goes without a warning.
	burstGap = 10 * time.Second
	warnGap  = time.Minute
	// fullSweepGap is the shortest time (store clock) between two full
	// expiry sweeps of one shard triggered by the bound.
	fullSweepGap = int64(time.Second)
)

// PinnedShare is the share of each shard's bound that blocks and lockout
// counts (the keys never evicted) may use, as a fraction
// PinnedShare/4: the remaining quarter (rounded up) is reserved for
// failure counters, so that a new identity can always be counted.
const PinnedShare = 3

// Options configures a Store. The zero value (or a nil *Options) is valid.
type Options struct {
	// MaxKeys bounds the number of keys held, expired or not. 0 means
	// DefaultMaxKeys; a negative value is an error. The bound is split
	// evenly over the store's shards (each shard holds at most its share).
	MaxKeys int
	// Now is the store's clock. nil means time.Now. Tests pass a fake
	// clock; the sweeper's ticker runs on real time but judges expiry by
	// this clock.
	Now func() time.Time
	// SweepInterval is how often a background goroutine removes expired
	// keys. 0 means DefaultSweepInterval; a negative value starts no
	// sweeper (expired keys are then removed lazily on access, when the
	// bound is reached, and by Sweep).
	SweepInterval time.Duration
	// Logger receives a warning when counters start being evicted, and
	// when a new block or lockout count is refused because the blocks'
	// share of the bound is full: once per burst (a burst ends after 10
	// seconds without one) and at most once a minute while it lasts. nil
	// means slog.Default() at the time of the warning, so a store opened by
	// URL warns too; pass slog.New(slog.DiscardHandler) to silence it.
	Logger *slog.Logger
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	// Keys is the number of keys held now, including expired keys not yet
	// removed.
	Keys int
	// MaxKeys is the configured bound.
	MaxKeys int
	// Pinned is the number of blocks and lockout counts held now (the keys
	// that are never evicted), expired ones not yet removed included.
	Pinned int
	// MaxPinned is the bound on Pinned: PinnedShare quarters of each
	// shard's share of MaxKeys, summed.
	MaxPinned int
	// Evictions counts live counters dropped to make room for a new key.
	Evictions uint64
	// Expired counts expired keys removed (lazily, by the sweeper or to
	// make room).
	Expired uint64
	// Full counts writes refused with backend.ErrFull: new blocks and
	// lockout counts that found their shard's pinned share full of live
	// ones. Counters are never refused.
	Full uint64
}

type kind uint8

const (
	kindFree    kind = iota // slot not in use
	kindCounter             // evictable counter
	kindPinned              // lockout counter (written by Block): never evicted
	kindBlock               // block value: never evicted
)

// entry is one key's slot in its shard's slab.
type entry struct {
	key  string // owned copy; "" when the slot is free
	val  string // block value
	n    int64  // counter value
	exp  int64  // expiry, unix nanoseconds; 0 = never
	h    uint64 // hash of key
	next int32  // next slot whose key has the same hash, or -1
	// prev and lnext link a counter into its class list (least recently
	// written first); -1 ends the list.
	prev, lnext int32
	kind        kind
}

func (e *entry) expired(now int64) bool { return e.exp != 0 && now >= e.exp }

// shard is one lock's worth of the store: a map from key hash to slot
// index and a slab of slots, so that a key is hashed once per call (the
// same hash picks the shard), updates never re-assign a map entry and
// nothing allocates. Keys whose 64-bit hashes collide are chained through
// entry.next. Counters are also on one doubly linked list per class (see
// class), least recently written first, threaded through the slots: the
// eviction victim is the head of the lowest non-empty class.
type shard struct {
	mu        sync.Mutex
	idx       map[uint64]int32 // hash -> first slot; nil after Close
	ents      []entry
	free      []int32
	n         int // keys held
	max       int
	pinned    int // blocks and lockout counts held
	maxPinned int
	nonEmpty  uint64 // bit c set: class c's list is not empty
	// pinFull is set when the pinned share is full of live keys; new
	// pinned keys fail fast until pinFullUntil (0: until a pinned key is
	// removed) or until a pinned key is removed.
	pinFull      bool
	pinFullUntil int64
	sweptAt      int64 // store clock of the last full sweep triggered by the bound
	head, tail   [classes]int32
}

// Store is an in-process Backend with exact counts and a bound on the
// number of keys. It implements backend.Backend, backend.Reserver and
// backend.Blocker. Create it with New; all methods are safe for concurrent
// use.
type Store struct {
	shards  []shard
	mask    uint64
	seed    maphash.Seed
	maxKeys int
	now     func() int64 // unix nanoseconds
	log     *slog.Logger

	closed    atomic.Bool
	evictions atomic.Uint64
	expiredN  atomic.Uint64
	fullN     atomic.Uint64
	evictWarn warner
	fullWarn  warner

	stop     chan struct{}
	done     chan struct{}
	closeOne sync.Once
}

var (
	_ backend.Backend  = (*Store)(nil)
	_ backend.Reserver = (*Store)(nil)
	_ backend.Blocker  = (*Store)(nil)
)

// New returns an empty Store configured by opts (nil for the defaults) and
// starts its sweeper. Close stops the sweeper. New fails only on a negative
// MaxKeys, with an error wrapping backend.ErrInvalid that names the setting.
func New(opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxKeys < 0 {
		return nil, fmt.Errorf("%w: memory: MaxKeys %d is negative", backend.ErrInvalid, o.MaxKeys)
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	n := maxShards
	for n > 1 && o.MaxKeys/n < minPerShard {
		n /= 2
	}
	s := &Store{
		shards:  make([]shard, n),
		mask:    uint64(n - 1),
		seed:    maphash.MakeSeed(),
		maxKeys: o.MaxKeys,
		now:     clockOf(o.Now),
		log:     o.Logger,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.max = o.MaxKeys / n
		if i < o.MaxKeys%n {
			sh.max++
		}
		sh.maxPinned = sh.max * PinnedShare / 4
		sh.idx = make(map[uint64]int32)
	}
	if o.SweepInterval > 0 {
		go s.sweeper(o.SweepInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// clockOf returns the store clock in unix nanoseconds: now's, or by default
// the wall clock at New plus the monotonic time since, which is cheaper to
// read than time.Now and immune to wall-clock steps (a TTL is a duration).
func clockOf(now func() time.Time) func() int64 {
	if now != nil {
		return func() int64 { return now().UnixNano() }
	}
	base := time.Now()
	wall := base.UnixNano()
	return func() int64 { return wall + int64(time.Since(base)) }
}

// locate returns the shard of key and the key's hash.
func (s *Store) locate(key string) (*shard, uint64) {
	h := maphash.String(s.seed, key)
	return &s.shards[h&s.mask], h
}

// shardIndex returns the index of key's shard.
func (s *Store) shardIndex(key string) int {
	return int(maphash.String(s.seed, key) & s.mask)
}

// find returns the slot of key (whose hash is h) in sh. The caller holds
// sh.mu.
func (sh *shard) find(h uint64, key string) (int32, bool) {
	i, ok := sh.idx[h]
	for ok {
		if sh.ents[i].key == key {
			return i, true
		}
		i = sh.ents[i].next
		ok = i >= 0
	}
	return 0, false
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return backend.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	return nil
}

func expiry(now int64, ttl time.Duration) int64 {
	if ttl == 0 {
		return 0
	}
	return now + int64(ttl)
}

// Incr implements backend.Backend. A new key that does not fit under the
// bound evicts a counter (see the package documentation); counters are
// never refused. An error means no key of the call stays incremented: on
// a key that holds a block (backend.ErrInvalid), the keys before it are
// taken back (their TTLs stay restarted).
func (s *Store) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := backend.CheckTTL(ttl); err != nil {
		return nil, err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]int64, len(keys))
	for i, k := range keys {
		n, err := s.incr(k, delta, ttl, now, kindCounter)
		if err != nil {
			if delta != 0 {
				s.refund(keys[:i], delta, ttl, now)
			}
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// incr adds delta to the counter key under its shard lock. k is
// kindPinned for lockout counters; a pinned counter stays pinned.
func (s *Store) incr(key string, delta int64, ttl time.Duration, now int64, k kind) (int64, error) {
	sh, h := s.locate(key)
	sh.mu.Lock()
	if sh.idx == nil {
		sh.mu.Unlock()
		return 0, backend.ErrClosed
	}
	n, evicted, err := s.incrLocked(sh, h, key, delta, ttl, now, k)
	sh.mu.Unlock()
	s.noteAfter(evicted, err)
	return n, err
}

// incrLocked is incr with sh (key's live shard) locked by the caller. It
// reports whether a counter was evicted to make room. It fails with
// backend.ErrInvalid on a block, and with backend.ErrFull when k is
// kindPinned and the shard's pinned share is full; either way it wrote
// nothing.
func (s *Store) incrLocked(sh *shard, h uint64, key string, delta int64, ttl time.Duration, now int64, k kind) (int64, bool, error) {
	exp := expiry(now, ttl)
	if i, ok := sh.find(h, key); ok {
		e := &sh.ents[i]
		if !e.expired(now) {
			switch {
			case e.kind == kindBlock:
				return 0, false, fmt.Errorf("%w: memory: Incr on key %q, which holds a block", backend.ErrInvalid, key)
			case e.kind == kindCounter && k == kindPinned:
				if err := s.pinRoom(sh, now, 1); err != nil {
					return 0, false, err
				}
				sh.unlink(i)
				e.kind = kindPinned
				sh.pinned++
				e.n += delta
			case e.kind == kindCounter:
				sh.unlink(i)
				e.n += delta
				sh.link(i)
			default: // a pinned counter stays pinned
				e.n += delta
			}
			e.exp = exp
			return e.n, false, nil
		}
		sh.remove(i)
		s.expiredN.Add(1)
	}
	_, evicted, err := s.insert(sh, h, key, now, k, delta, exp, "")
	if err != nil {
		return 0, false, err
	}
	return delta, evicted, nil
}

// insert adds key (absent from sh) as a key of kind k with the given
// count, expiry and block value, making room first: a pinned key needs
// room in the pinned share (pinRoom), and a shard at its bound evicts a
// counter (makeRoom). It returns the key's slot and whether a live counter
// was evicted. The caller holds sh.mu.
func (s *Store) insert(sh *shard, h uint64, key string, now int64, k kind, n, exp int64, val string) (int32, bool, error) {
	if k != kindCounter {
		if err := s.pinRoom(sh, now, 1); err != nil {
			return -1, false, err
		}
	}
	evicted := false
	if sh.n >= sh.max {
		evicted = s.makeRoom(sh, now)
	}
	var i int32
	if f := len(sh.free); f > 0 {
		i = sh.free[f-1]
		sh.free = sh.free[:f-1]
	} else {
		sh.ents = append(sh.ents, entry{})
		i = int32(len(sh.ents) - 1)
	}
	e := &sh.ents[i]
	e.key, e.h, e.next = strings.Clone(key), h, -1
	e.n, e.exp, e.kind, e.val = n, exp, k, val
	if head, ok := sh.idx[h]; ok { // a hash collision: chain after the head
		e.next = sh.ents[head].next
		sh.ents[head].next = i
	} else {
		sh.idx[h] = i
	}
	sh.n++
	if k == kindCounter {
		sh.link(i)
	} else {
		sh.pinned++
	}
	return i, evicted, nil
}

// class returns the eviction class of a counter of count n: the count
// itself from 1 to classes-2, 0 for counts <= 0, classes-1 for the larger
// ones.
func class(n int64) int {
	switch {
	case n <= 0:
		return 0
	case n >= classes-1:
		return classes - 1
	}
	return int(n)
}

// link appends counter slot i to the tail (most recently written end) of
// its class list. The caller holds sh.mu.
func (sh *shard) link(i int32) {
	e := &sh.ents[i]
	c := class(e.n)
	e.lnext = -1
	if sh.nonEmpty&(1<<c) == 0 {
		e.prev = -1
		sh.head[c] = i
		sh.nonEmpty |= 1 << c
	} else {
		e.prev = sh.tail[c]
		sh.ents[e.prev].lnext = i
	}
	sh.tail[c] = i
}

// unlink takes counter slot i off its class list; call it before changing
// the slot's count. The caller holds sh.mu.
func (sh *shard) unlink(i int32) {
	e := &sh.ents[i]
	c := class(e.n)
	if e.prev >= 0 {
		sh.ents[e.prev].lnext = e.lnext
	} else {
		sh.head[c] = e.lnext
	}
	if e.lnext >= 0 {
		sh.ents[e.lnext].prev = e.prev
	} else {
		sh.tail[c] = e.prev
	}
	if sh.head[c] < 0 {
		sh.nonEmpty &^= 1 << c
	}
}

// remove frees slot i of sh. The caller holds sh.mu.
func (sh *shard) remove(i int32) {
	e := &sh.ents[i]
	if e.kind == kindCounter {
		sh.unlink(i)
	} else {
		sh.pinned--
		sh.pinFull = false
	}
	if head := sh.idx[e.h]; head == i {
		if e.next >= 0 {
			sh.idx[e.h] = e.next
		} else {
			delete(sh.idx, e.h)
		}
	} else {
		for p := head; ; p = sh.ents[p].next {
			if sh.ents[p].next == i {
				sh.ents[p].next = e.next
				break
			}
		}
	}
	*e = entry{}
	sh.free = append(sh.free, i)
	sh.n--
}

// sweepShard removes every expired key of sh and returns how many. The
// caller holds sh.mu.
func (s *Store) sweepShard(sh *shard, now int64) int {
	n := 0
	for i := range sh.ents {
		e := &sh.ents[i]
		if e.kind != kindFree && e.expired(now) {
			sh.remove(int32(i))
			n++
		}
	}
	if n > 0 {
		s.expiredN.Add(uint64(n))
	}
	return n
}

// sweepDue reports whether the bound may trigger a full sweep of sh now
// (at most once a second of store time), and records it.
func (sh *shard) sweepDue(now int64) bool {
	if sh.sweptAt == 0 || now-sh.sweptAt >= fullSweepGap || now < sh.sweptAt {
		sh.sweptAt = now
		return true
	}
	return false
}

// makeRoom frees one slot of sh, which is at its bound: it sweeps expired
// keys (at most once a second of store time), else removes the first
// expired counter at the head of a class list, else evicts the least
// recently written counter of the lowest class. There always is one: the
// pinned keys never fill more than maxPinned < max slots. It reports
// whether a live counter was evicted. The caller holds sh.mu.
func (s *Store) makeRoom(sh *shard, now int64) bool {
	if sh.sweepDue(now) && s.sweepShard(sh, now) > 0 {
		return false
	}
	for b := sh.nonEmpty; b != 0; b &= b - 1 {
		if i := sh.head[bits.TrailingZeros64(b)]; sh.ents[i].expired(now) {
			sh.remove(i)
			s.expiredN.Add(1)
			return false
		}
	}
	sh.remove(sh.head[bits.TrailingZeros64(sh.nonEmpty)])
	s.evictions.Add(1)
	return true
}

// pinRoom makes sure that need more pinned keys fit in sh's pinned share.
// When they do not, it sweeps expired keys if a pinned key is known to
// have expired since the share was found full of live keys, or, when the
// share is not known to be full, if a sweep is due (at most once a second
// of store time); otherwise, or when the sweep freed too little, it fails
// with backend.ErrFull. A share found full of live keys is marked so until
// its first pinned key expires or one is removed, and refuses without a
// scan meanwhile. The caller holds sh.mu.
func (s *Store) pinRoom(sh *shard, now int64, need int) error {
	if sh.pinned+need <= sh.maxPinned {
		return nil
	}
	var sweep bool
	if sh.pinFull {
		sweep = sh.pinFullUntil != 0 && now >= sh.pinFullUntil
	} else {
		sweep = sh.sweepDue(now)
	}
	if sweep {
		s.sweepShard(sh, now)
		if sh.pinned+need <= sh.maxPinned {
			return nil
		}
		if sh.pinned >= sh.maxPinned {
			sh.pinFull, sh.pinFullUntil = true, 0
			for i := range sh.ents {
				if e := &sh.ents[i]; (e.kind == kindPinned || e.kind == kindBlock) && e.exp != 0 && (sh.pinFullUntil == 0 || e.exp < sh.pinFullUntil) {
					sh.pinFullUntil = e.exp
				}
			}
		}
	}
	s.fullN.Add(1)
	return fmt.Errorf("%w: memory: %d of the shard's %d keys are live blocks and lockout counts, their whole share (MaxKeys %d)", backend.ErrFull, sh.pinned, sh.max, s.maxKeys)
}

// pinNeed returns 1 when writing key as a block or lockout count would add
// a pinned key to sh (it is absent, expired or a counter), else 0. The
// caller holds sh.mu.
func pinNeed(sh *shard, h uint64, key string, now int64) int {
	if i, ok := sh.find(h, key); ok {
		if e := &sh.ents[i]; !e.expired(now) && e.kind != kindCounter {
			return 0
		}
	}
	return 1
}

// warner rate-limits one kind of warning: the first event of a burst (a
// burst ends after burstGap without an event) is logged, then at most one
// every warnGap while the burst lasts.
type warner struct {
	last   atomic.Int64 // real unix nanos of the last event
	warned atomic.Int64 // real unix nanos of the last warning
}

// note records an event and reports whether to log it.
func (w *warner) note() bool {
	now := time.Now().UnixNano()
	prev := w.last.Swap(now)
	warned := w.warned.Load()
	if now-prev < int64(burstGap) && now-warned < int64(warnGap) {
		return false
	}
	return w.warned.CompareAndSwap(warned, now)
}

func (s *Store) logger() *slog.Logger {
	if s.log != nil {
		return s.log
	}
	return slog.Default()
}

// noteAfter logs (rate-limited, see warner) an eviction or a refusal
// (err wrapping backend.ErrFull) once the shard locks are released.
func (s *Store) noteAfter(evicted bool, err error) {
	if evicted && s.evictWarn.note() {
		s.logger().Warn("memory store at its key bound: evicting failure counters, fewest failures and least recently written first (blocks and lockout counts are kept); an attacker spreading a flood over many keys can make it forget failures, raise MaxKeys",
			"max_keys", s.maxKeys, "evictions_total", s.evictions.Load())
	}
	if err != nil && errors.Is(err, backend.ErrFull) && s.fullWarn.note() {
		s.logger().Warn("memory store: the blocks' share of the key bound is full of live blocks and lockout counts; new blocks are refused (the engine keeps those identities locked by their failure counters), raise MaxKeys",
			"max_keys", s.maxKeys, "max_pinned", s.maxPinnedTotal(), "refused_total", s.fullN.Load())
	}
}

func (s *Store) maxPinnedTotal() int {
	n := 0
	for i := range s.shards {
		n += s.shards[i].maxPinned
	}
	return n
}

// SetBlock implements backend.Backend. Blocks are never evicted; when the
// key is new (or a counter) and its shard's pinned share is full of live
// blocks and lockout counts, SetBlock fails with backend.ErrFull and
// writes nothing.
func (s *Store) SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckTTL(ttl); err != nil {
		return err
	}
	if err := backend.CheckKey(key); err != nil {
		return err
	}
	now := s.now()
	sh, h := s.locate(key)
	sh.mu.Lock()
	if sh.idx == nil {
		sh.mu.Unlock()
		return backend.ErrClosed
	}
	evicted, err := s.setBlockLocked(sh, h, key, string(value), expiry(now, ttl), now)
	sh.mu.Unlock()
	s.noteAfter(evicted, err)
	return err
}

// setBlockLocked writes the block key with sh (key's live shard) locked by
// the caller. It reports whether a counter was evicted to make room.
func (s *Store) setBlockLocked(sh *shard, h uint64, key, val string, exp, now int64) (bool, error) {
	if i, ok := sh.find(h, key); ok {
		e := &sh.ents[i]
		if !e.expired(now) {
			if e.kind == kindCounter {
				if err := s.pinRoom(sh, now, 1); err != nil {
					return false, err
				}
				sh.unlink(i)
				sh.pinned++
			}
			e.val, e.n, e.exp, e.kind = val, 0, exp, kindBlock
			return false, nil
		}
		sh.remove(i)
		s.expiredN.Add(1)
	}
	_, evicted, err := s.insert(sh, h, key, now, kindBlock, 0, exp, val)
	return evicted, err
}

// lookup returns the entry of key as Get would, removing it when expired.
func (s *Store) lookup(key string, now int64) (backend.Entry, error) {
	sh, h := s.locate(key)
	sh.mu.Lock()
	if sh.idx == nil {
		sh.mu.Unlock()
		return backend.Entry{}, backend.ErrClosed
	}
	out := s.lookupLocked(sh, h, key, now, false)
	sh.mu.Unlock()
	return out, nil
}

// lookupLocked is lookup with sh (key's live shard) locked by the caller;
// with ttlOnly the entry's Value is left nil (see toEntry).
func (s *Store) lookupLocked(sh *shard, h uint64, key string, now int64, ttlOnly bool) backend.Entry {
	i, ok := sh.find(h, key)
	if !ok {
		return backend.Entry{Key: key}
	}
	e := &sh.ents[i]
	if e.expired(now) {
		sh.remove(i)
		s.expiredN.Add(1)
		return backend.Entry{Key: key}
	}
	out := toEntry(e, now, ttlOnly)
	out.Key = key
	return out
}

// toEntry converts a live entry; the caller sets Key. With ttlOnly (a
// Reservation's TTLOnly) the value is not copied: Value stays nil.
func toEntry(e *entry, now int64, ttlOnly bool) backend.Entry {
	out := backend.Entry{Found: true}
	switch {
	case ttlOnly:
	case e.kind == kindBlock:
		out.Value = []byte(e.val)
	default:
		out.Value = strconv.AppendInt(nil, e.n, 10)
	}
	if e.exp != 0 {
		out.TTL = time.Duration(e.exp - now)
	}
	return out
}

// Get implements backend.Backend. An expired key found by Get is removed.
func (s *Store) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]backend.Entry, len(keys))
	for i, k := range keys {
		e, err := s.lookup(k, now)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// Delete implements backend.Backend.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) delete(key string) error {
	sh, h := s.locate(key)
	sh.mu.Lock()
	if sh.idx == nil {
		sh.mu.Unlock()
		return backend.ErrClosed
	}
	if i, ok := sh.find(h, key); ok {
		sh.remove(i)
	}
	sh.mu.Unlock()
	return nil
}

// Reserve implements backend.Reserver. It takes the pairs (Blocks[i],
// Counters[i]) in order and, for each, locks both keys' shards together
// (in shard order, once when they share one), reads the block and, when
// there is none, increments the counter: each pair is atomic, which is
// the ordering rule of backend.Reserve. When a block is found, the
// counters of the earlier pairs are refunded (and removed when back at 0),
// so a blocked attempt leaves nothing behind; a request blocked by its
// first pair touches no counter at all. A new counter always fits (it
// evicts one when the store is at its bound), so Reserve never fails with
// backend.ErrFull. Reserve allocates nothing but the copies of newly
// inserted keys (and the block's Value when blocked), and reuses the
// capacity of r.Counts. An error means no counter stays incremented.
func (s *Store) Reserve(ctx context.Context, r *backend.Reservation) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return err
	}
	now := s.now()
	r.Blocked = -1
	r.Block = backend.Entry{}
	r.Counts = r.Counts[:0]
	nb, nc := len(r.Blocks), len(r.Counters)
	noted := false // a counter was evicted: log after the locks
	for i := 0; i < nb || i < nc; i++ {
		bi, ci := -1, -1
		var bh, ch uint64
		if i < nb {
			bh = maphash.String(s.seed, r.Blocks[i])
			bi = int(bh & s.mask)
		}
		if i < nc {
			ch = maphash.String(s.seed, r.Counters[i])
			ci = int(ch & s.mask)
		}
		lo, hi := bi, ci
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo >= 0 {
			s.shards[lo].mu.Lock()
		}
		if hi != lo {
			s.shards[hi].mu.Lock()
		}
		if s.shards[hi].idx == nil { // closed (hi >= 0, and lo's shard too)
			s.unlockPair(lo, hi)
			return backend.ErrClosed
		}
		if bi >= 0 {
			if e := s.lookupLocked(&s.shards[bi], bh, r.Blocks[i], now, r.TTLOnly); e.Found {
				s.unlockPair(lo, hi)
				r.Blocked, r.Block = i, e
				s.refund(r.Counters[:min(i, nc)], 1, r.TTL, now)
				r.Counts = r.Counts[:0]
				s.noteAfter(noted, nil)
				return nil
			}
		}
		if ci >= 0 {
			n, evicted, err := s.incrLocked(&s.shards[ci], ch, r.Counters[i], 1, r.TTL, now, kindCounter)
			if err != nil { // a counter key that holds a block: take back this reservation's counts
				s.unlockPair(lo, hi)
				s.refund(r.Counters[:i], 1, r.TTL, now)
				r.Counts = r.Counts[:0]
				s.noteAfter(noted, nil)
				return err
			}
			r.Counts = append(r.Counts, n)
			if evicted {
				noted = true
			}
		}
		s.unlockPair(lo, hi)
	}
	if noted {
		s.noteAfter(true, nil)
	}
	return nil
}

func (s *Store) unlockPair(lo, hi int) {
	if hi != lo {
		s.shards[hi].mu.Unlock()
	}
	if lo >= 0 {
		s.shards[lo].mu.Unlock()
	}
}

// refund takes back delta from each counter (a reservation that met a
// block, an Incr that failed midway), removing a counter that falls back
// to 0 so that a blocked flood leaves no keys behind.
func (s *Store) refund(counters []string, delta int64, ttl time.Duration, now int64) {
	for _, key := range counters {
		sh, h := s.locate(key)
		sh.mu.Lock()
		if sh.idx != nil {
			if i, ok := sh.find(h, key); ok {
				e := &sh.ents[i]
				switch {
				case e.kind == kindBlock:
				case e.n == delta:
					sh.remove(i)
				case e.kind == kindCounter:
					sh.unlink(i)
					e.n -= delta
					e.exp = expiry(now, ttl)
					sh.link(i)
				default:
					e.n -= delta
					e.exp = expiry(now, ttl)
				}
			}
		}
		sh.mu.Unlock()
	}
}

// Block implements backend.Blocker with the semantics of backend.Block. The
// lockout count and the block are written together under their shard
// locks, then the failure counter is deleted (after the block: the
// ordering rule of backend.Reserve). The lockout count is pinned: like
// blocks, it is never evicted. When the pinned share of a shard cannot take
// a new block or lockout count, Block fails with backend.ErrFull and
// writes nothing (the failure counter stays, so the engine keeps the
// identity locked by it). With IfAbsent, the check of the block key and the
// block are made under the same shard locks: atomic.
func (s *Store) Block(ctx context.Context, req backend.BlockRequest) (backend.BlockResult, error) {
	if err := req.Validate(); err != nil {
		return backend.BlockResult{}, err
	}
	if err := s.check(ctx); err != nil {
		return backend.BlockResult{}, err
	}
	now := s.now()
	lh := maphash.String(s.seed, req.LockoutsKey)
	bh := maphash.String(s.seed, req.BlockKey)
	li, bi := int(lh&s.mask), int(bh&s.mask)
	lo, hi := min(li, bi), max(li, bi)
	s.shards[lo].mu.Lock()
	if hi != lo {
		s.shards[hi].mu.Lock()
	}
	if s.shards[hi].idx == nil {
		s.unlockPair(lo, hi)
		return backend.BlockResult{}, backend.ErrClosed
	}
	lsh, bsh := &s.shards[li], &s.shards[bi]
	if req.IfAbsent {
		// The block key's shard is locked: checking and blocking are
		// atomic.
		if e := s.lookupLocked(bsh, bh, req.BlockKey, now, false); e.Found {
			s.unlockPair(lo, hi)
			return backend.BlockResult{Duration: e.TTL, Existing: true}, nil
		}
	}
	// Room for both pinned keys first, so that a refusal writes nothing.
	nl, nb := pinNeed(lsh, lh, req.LockoutsKey, now), pinNeed(bsh, bh, req.BlockKey, now)
	var err error
	if li == bi {
		err = s.pinRoom(lsh, now, nl+nb)
	} else if err = s.pinRoom(lsh, now, nl); err == nil {
		err = s.pinRoom(bsh, now, nb)
	}
	if err != nil {
		s.unlockPair(lo, hi)
		s.noteAfter(false, err)
		return backend.BlockResult{}, err
	}
	lockouts, ev1, err := s.incrLocked(lsh, lh, req.LockoutsKey, 1, req.Window, now, kindPinned)
	if err != nil { // the lockouts key holds a block
		s.unlockPair(lo, hi)
		return backend.BlockResult{}, err
	}
	res := backend.BlockResult{Lockouts: lockouts, Duration: backend.Escalate(req.Durations, lockouts)}
	// Cannot fail: the room is there and the block key may hold anything.
	ev2, _ := s.setBlockLocked(bsh, bh, req.BlockKey, string(req.Value), expiry(now, res.Duration), now)
	s.unlockPair(lo, hi)
	s.noteAfter(ev1 || ev2, nil)
	if req.CounterKey != "" {
		if err := s.delete(req.CounterKey); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Sweep removes every expired key now, one shard lock at a time, and
// returns how many it removed. The background sweeper calls it; callers
// may too (for example a CLI cleanup command).
func (s *Store) Sweep(ctx context.Context) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	now := s.now()
	total := 0
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("memory: %w", err)
		}
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.idx == nil {
			sh.mu.Unlock()
			return total, backend.ErrClosed
		}
		total += s.sweepShard(sh, now)
		sh.mu.Unlock()
	}
	return total, nil
}

func (s *Store) sweeper(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_, _ = s.Sweep(context.Background())
		}
	}
}

// Stats returns a snapshot of the store's counters, taking each shard lock
// briefly. After Close, Keys and Pinned are 0.
func (s *Store) Stats() Stats {
	st := Stats{
		MaxKeys:   s.maxKeys,
		MaxPinned: s.maxPinnedTotal(),
		Evictions: s.evictions.Load(),
		Expired:   s.expiredN.Load(),
		Full:      s.fullN.Load(),
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		st.Keys += sh.n
		st.Pinned += sh.pinned
		sh.mu.Unlock()
	}
	return st
}

// EachStat calls fn once per statistic of Stats, always the same names in
// the same order, with a one-line description and whether the value only
// grows (a counter) or goes up and down (a gauge). Metrics exporters use
// it: metrics/prometheus.Options.Store exports every statistic as
// defender_store_<name>.
func (s *Store) EachStat(fn func(name, help string, counter bool, value float64)) {
	st := s.Stats()
	fn("keys", "Keys held by the memory store, expired ones not yet removed included.", false, float64(st.Keys))
	fn("max_keys", "The memory store's bound on keys (MaxKeys).", false, float64(st.MaxKeys))
	fn("pinned_keys", "Blocks and lockout counts held by the memory store (never evicted).", false, float64(st.Pinned))
	fn("max_pinned_keys", "The bound on blocks and lockout counts: their share of MaxKeys.", false, float64(st.MaxPinned))
	fn("evictions_total", "Live failure counters the memory store evicted to make room: each forgot failures.", true, float64(st.Evictions))
	fn("expired_total", "Expired keys the memory store removed.", true, float64(st.Expired))
	fn("refused_total", "New blocks and lockout counts the memory store refused (backend.ErrFull) because their share was full.", true, float64(st.Full))
}

// Close stops the sweeper, waits for it, and releases every key. Calls
// after Close (and calls racing with it that have not yet reached their
// shard) return backend.ErrClosed. Close is idempotent and returns nil.
func (s *Store) Close() error {
	s.closeOne.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		// Every shard is locked at once (in index order, the order the
		// two-shard operations lock in) before any is cleared: a caller
		// holding two shard locks sees both open or both closed.
		for i := range s.shards {
			s.shards[i].mu.Lock()
		}
		for i := range s.shards {
			sh := &s.shards[i]
			sh.idx, sh.ents, sh.free, sh.n, sh.pinned, sh.nonEmpty = nil, nil, nil, 0, 0, 0
		}
		for i := range s.shards {
			s.shards[i].mu.Unlock()
		}
	})
	return nil
}
