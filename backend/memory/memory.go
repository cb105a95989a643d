package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
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
	sampleSize  = 8  // counters sampled per eviction (like Redis maxmemory-samples)
	// burstGap is the quiet time after which a new eviction is logged again.
	burstGap = 10 * time.Second
	// fullSweepGap is the shortest time (store clock) between two full
	// expiry sweeps of one shard triggered by the bound.
	fullSweepGap = int64(time.Second)
)

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
	// Logger, when set, receives one warning per burst of evictions (a
	// burst ends after 10 seconds without one). nil logs nothing.
	Logger *slog.Logger
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	// Keys is the number of keys held now, including expired keys not yet
	// removed.
	Keys int
	// MaxKeys is the configured bound.
	MaxKeys int
	// Evictions counts live counters dropped to make room for a new key.
	Evictions uint64
	// Expired counts expired keys removed (lazily, by the sweeper or to
	// make room).
	Expired uint64
	// Full counts writes refused with backend.ErrFull.
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
	kind kind
}

func (e *entry) expired(now int64) bool { return e.exp != 0 && now >= e.exp }

// shard is one lock's worth of the store: a map from key hash to slot
// index and a slab of slots, so that a key is hashed once per call (the
// same hash picks the shard), updates never re-assign a map entry and
// nothing allocates. Keys whose 64-bit hashes collide are chained through
// entry.next.
type shard struct {
	mu   sync.Mutex
	idx  map[uint64]int32 // hash -> first slot; nil after Close
	ents []entry
	free []int32
	n    int // keys held
	max  int
	// full is set when the shard is at its bound holding only blocks and
	// lockout counters; new keys fail fast until fullUntil (0: until a
	// delete) or until something is removed.
	full      bool
	fullUntil int64
	sweptAt   int64    // store clock of the last full sweep triggered by the bound
	_         [24]byte // pad to 128 bytes: no false sharing between shards
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
	blockMu   sync.Mutex // serialises conditional (IfAbsent) blocks
	expiredN  atomic.Uint64
	fullN     atomic.Uint64
	lastEvict atomic.Int64 // real unix nanos of the last eviction

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
// bound evicts a sampled counter; when its shard holds only blocks and
// lockout counters, Incr fails with backend.ErrFull (counters incremented
// before that key in the same call stay incremented).
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
	if evicted {
		s.noteEviction()
	}
	return n, err
}

// incrLocked is incr with sh (key's live shard) locked by the caller. It
// reports whether a counter was evicted to make room.
func (s *Store) incrLocked(sh *shard, h uint64, key string, delta int64, ttl time.Duration, now int64, k kind) (int64, bool, error) {
	if i, ok := sh.find(h, key); ok {
		e := &sh.ents[i]
		switch {
		case e.expired(now):
			e.n, e.val, e.kind = 0, "", k
			s.expiredN.Add(1)
		case e.kind == kindBlock:
			return 0, false, fmt.Errorf("%w: memory: Incr on key %q, which holds a block", backend.ErrInvalid, key)
		case k == kindPinned:
			e.kind = kindPinned
		}
		e.n += delta
		e.exp = expiry(now, ttl)
		return e.n, false, nil
	}
	e, evicted, err := s.insert(sh, h, key, now)
	if err != nil {
		return 0, false, err
	}
	e.n, e.exp, e.kind = delta, expiry(now, ttl), k
	return delta, evicted, nil
}

// insert adds key (absent from sh) and returns its zeroed slot, making room
// first when sh is at its bound. It reports whether a live counter was
// evicted. The caller holds sh.mu.
func (s *Store) insert(sh *shard, h uint64, key string, now int64) (*entry, bool, error) {
	evicted := false
	if sh.n >= sh.max {
		var err error
		if evicted, err = s.makeRoom(sh, now); err != nil {
			return nil, false, err
		}
	}
	var i int32
	if n := len(sh.free); n > 0 {
		i = sh.free[n-1]
		sh.free = sh.free[:n-1]
	} else {
		sh.ents = append(sh.ents, entry{})
		i = int32(len(sh.ents) - 1)
	}
	e := &sh.ents[i]
	e.key, e.h, e.next = strings.Clone(key), h, -1
	if head, ok := sh.idx[h]; ok { // a hash collision: chain after the head
		e.next = sh.ents[head].next
		sh.ents[head].next = i
	} else {
		sh.idx[h] = i
	}
	sh.n++
	return e, evicted, nil
}

// remove frees slot i of sh. The caller holds sh.mu.
func (sh *shard) remove(i int32) {
	e := &sh.ents[i]
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
	sh.full = false
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

// makeRoom frees one slot of the full shard sh: it sweeps expired keys (at
// most once a second of store time), then evicts the counter with the
// smallest count (the soonest to expire among equals) out of a random
// sample, then, when the sample holds only blocks and lockout counters, the
// best counter of the whole shard. With no counter left it marks the shard
// full and returns backend.ErrFull. The caller holds sh.mu.
func (s *Store) makeRoom(sh *shard, now int64) (bool, error) {
	if sh.full && (sh.fullUntil == 0 || now < sh.fullUntil) {
		s.fullN.Add(1)
		return false, fmt.Errorf("%w: memory: %d keys in shard, all blocks or lockout counts (MaxKeys %d)", backend.ErrFull, sh.n, s.maxKeys)
	}
	if sh.sweptAt == 0 || now-sh.sweptAt >= fullSweepGap || now < sh.sweptAt {
		sh.sweptAt = now
		if s.sweepShard(sh, now) > 0 {
			return false, nil
		}
	}
	best := int32(-1)
	n := int32(len(sh.ents))
	for range sampleSize {
		i := rand.Int32N(n)
		if better(sh, i, best, now) {
			best = i
		}
	}
	if best < 0 {
		for i := range n {
			if better(sh, i, best, now) {
				best = i
			}
		}
	}
	if best >= 0 {
		evicted := !sh.ents[best].expired(now)
		sh.remove(best)
		if evicted {
			s.evictions.Add(1)
		} else {
			s.expiredN.Add(1)
		}
		return evicted, nil
	}
	// Only blocks and lockout counts: remember until when, so that the
	// next writes fail without a scan.
	sh.full, sh.fullUntil = true, 0
	for i := range sh.ents {
		if e := &sh.ents[i]; e.kind != kindFree && e.exp != 0 && (sh.fullUntil == 0 || e.exp < sh.fullUntil) {
			sh.fullUntil = e.exp
		}
	}
	s.fullN.Add(1)
	return false, fmt.Errorf("%w: memory: %d keys in shard, all blocks or lockout counts (MaxKeys %d)", backend.ErrFull, sh.n, s.maxKeys)
}

// better reports whether slot i is a better victim than slot best (-1: none):
// an expired key beats everything, then a counter with a smaller count, then
// one that expires sooner. Free slots, blocks and lockout counters are never
// victims unless expired.
func better(sh *shard, i, best int32, now int64) bool {
	e := &sh.ents[i]
	if e.kind == kindFree {
		return false
	}
	ex := e.expired(now)
	if !ex && e.kind != kindCounter {
		return false
	}
	if best < 0 {
		return true
	}
	b := &sh.ents[best]
	bx := b.expired(now)
	switch {
	case bx:
		return false
	case ex:
		return true
	case e.n != b.n:
		return e.n < b.n
	default:
		return e.exp != 0 && (b.exp == 0 || e.exp < b.exp)
	}
}

func (s *Store) noteEviction() {
	now := time.Now().UnixNano()
	prev := s.lastEvict.Swap(now)
	if s.log != nil && now-prev >= int64(burstGap) {
		s.log.Warn("memory store at its key bound: evicting least-used counters (blocks and lockout counts are kept)",
			"max_keys", s.maxKeys, "evictions_total", s.evictions.Load())
	}
}

// SetBlock implements backend.Backend. Blocks are never evicted; when the
// key is new and its shard holds only blocks and lockout counters, SetBlock
// fails with backend.ErrFull rather than drop one.
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
	return s.setBlock(key, string(value), ttl, s.now())
}

func (s *Store) setBlock(key, val string, ttl time.Duration, now int64) error {
	sh, h := s.locate(key)
	sh.mu.Lock()
	if sh.idx == nil {
		sh.mu.Unlock()
		return backend.ErrClosed
	}
	var e *entry
	evicted := false
	if i, ok := sh.find(h, key); ok {
		e = &sh.ents[i]
	} else {
		var err error
		if e, evicted, err = s.insert(sh, h, key, now); err != nil {
			sh.mu.Unlock()
			return err
		}
	}
	e.val, e.n, e.exp, e.kind = val, 0, expiry(now, ttl), kindBlock
	sh.mu.Unlock()
	if evicted {
		s.noteEviction()
	}
	return nil
}

// lookup returns the entry of key as Get would, removing it when expired.
func (s *Store) lookup(key string, now int64) (backend.Entry, error) {
	sh, h := s.locate(key)
	sh.mu.Lock()
	if sh.idx == nil {
		sh.mu.Unlock()
		return backend.Entry{}, backend.ErrClosed
	}
	out := s.lookupLocked(sh, h, key, now)
	sh.mu.Unlock()
	return out, nil
}

// lookupLocked is lookup with sh (key's live shard) locked by the caller.
func (s *Store) lookupLocked(sh *shard, h uint64, key string, now int64) backend.Entry {
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
	out := toEntry(e, now)
	out.Key = key
	return out
}

// toEntry converts a live entry; the caller sets Key.
func toEntry(e *entry, now int64) backend.Entry {
	out := backend.Entry{Found: true}
	if e.kind == kindBlock {
		out.Value = []byte(e.val)
	} else {
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
// the ordering rule of backend.Reserve. When a block is found (or a new
// counter does not fit: backend.ErrFull), the counters of the earlier
// pairs are refunded (and removed when back at 0),
// so a blocked attempt leaves nothing behind; a request blocked by its
// first pair touches no counter at all. Reserve allocates nothing but the
// copies of newly inserted keys (and the block's Value when blocked), and
// reuses the capacity of r.Counts.
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
			if e := s.lookupLocked(&s.shards[bi], bh, r.Blocks[i], now); e.Found {
				s.unlockPair(lo, hi)
				r.Blocked, r.Block = i, e
				s.refund(r.Counters[:min(i, nc)], r.TTL, now)
				r.Counts = r.Counts[:0]
				return nil
			}
		}
		if ci >= 0 {
			n, evicted, err := s.incrLocked(&s.shards[ci], ch, r.Counters[i], 1, r.TTL, now, kindCounter)
			if err != nil { // ErrFull: take back this reservation's counts
				s.unlockPair(lo, hi)
				s.refund(r.Counters[:i], r.TTL, now)
				r.Counts = r.Counts[:0]
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
		s.noteEviction()
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

// refund takes back one increment of each counter (a reservation that met
// a block), removing a counter that falls back to 0 so that a blocked
// flood leaves no keys behind.
func (s *Store) refund(counters []string, ttl time.Duration, now int64) {
	for _, key := range counters {
		sh, h := s.locate(key)
		sh.mu.Lock()
		if sh.idx != nil {
			if i, ok := sh.find(h, key); ok {
				if e := &sh.ents[i]; e.kind == kindCounter || e.kind == kindPinned {
					e.n--
					e.exp = expiry(now, ttl)
					if e.n == 0 {
						sh.remove(i)
					}
				}
			}
		}
		sh.mu.Unlock()
	}
}

// Block implements backend.Blocker with the semantics of backend.Block. The
// lockout counter it increments is pinned: like blocks, it is never evicted.
func (s *Store) Block(ctx context.Context, req backend.BlockRequest) (backend.BlockResult, error) {
	if err := req.Validate(); err != nil {
		return backend.BlockResult{}, err
	}
	if err := s.check(ctx); err != nil {
		return backend.BlockResult{}, err
	}
	now := s.now()
	if req.IfAbsent {
		// Conditional blocks are serialised, so that the check and the
		// block are atomic for them (blocks are rare: one lock is enough).
		s.blockMu.Lock()
		defer s.blockMu.Unlock()
		if e, err := s.lookup(req.BlockKey, now); err == nil && e.Found {
			return backend.BlockResult{Duration: e.TTL, Existing: true}, nil
		}
	}
	lockouts, err := s.incr(req.LockoutsKey, 1, req.Window, now, kindPinned)
	if err != nil {
		return backend.BlockResult{}, err
	}
	res := backend.BlockResult{Lockouts: lockouts, Duration: backend.Escalate(req.Durations, lockouts)}
	if err := s.setBlock(req.BlockKey, string(req.Value), res.Duration, now); err != nil {
		return res, err
	}
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
// briefly. After Close, Keys is 0.
func (s *Store) Stats() Stats {
	st := Stats{
		MaxKeys:   s.maxKeys,
		Evictions: s.evictions.Load(),
		Expired:   s.expiredN.Load(),
		Full:      s.fullN.Load(),
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		st.Keys += sh.n
		sh.mu.Unlock()
	}
	return st
}

// Close stops the sweeper, waits for it, and releases every key. Calls
// after Close (and calls racing with it that have not yet reached their
// shard) return backend.ErrClosed. Close is idempotent and returns nil.
func (s *Store) Close() error {
	s.closeOne.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			sh.idx, sh.ents, sh.free, sh.n = nil, nil, nil, 0
			sh.mu.Unlock()
		}
	})
	return nil
}
