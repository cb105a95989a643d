package memcached

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
)

// MaxKeyLen is Memcached's key limit in bytes. The prefix and every key
// given by the engine (at most backend.MaxKeyLen bytes) must fit in it
// together.
const MaxKeyLen = 250

// MaxPrefixLen is the longest Options.Prefix New accepts:
// MaxKeyLen - backend.MaxKeyLen.
const MaxPrefixLen = MaxKeyLen - backend.MaxKeyLen

// Defaults of Options, and of Scan's page size.
const (
	// DefaultIndexShards is the default Options.IndexShards.
	DefaultIndexShards = 64
	// DefaultIndexShardBytes is the default Options.IndexShardBytes.
	DefaultIndexShardBytes = 512 << 10
	// DefaultIndexQueue is the default Options.IndexQueue.
	DefaultIndexQueue = 8192
	// DefaultEvictionCheck is the default Options.EvictionCheck.
	DefaultEvictionCheck = time.Minute
	// DefaultScanLimit is Scan's page size when its limit is <= 0.
	DefaultScanLimit = 100
	// DefaultMaxInFlight is the default Options.MaxInFlight.
	DefaultMaxInFlight = 128
)

// Item flags that mark the values this package writes.
const (
	flagCounter uint32 = 0xdef1
	flagBlock   uint32 = 0xdef2
	flagIndex   uint32 = 0xdef3
	flagTomb    uint32 = 0xdef4
)

// A deleted key is replaced by a tombstone that lives tombstoneLife
// seconds on the server (at least tombstoneLife-1: its clock ticks once a
// second). A counter read older than tombstoneGuard is not written from
// but read again, so an "add" can never recreate a key deleted after the
// read (see Reserve).
const (
	tombstoneLife  = 3
	tombstoneGuard = time.Second
)

// maxRelative is the longest expiration Memcached takes as relative seconds;
// longer ones are absolute Unix times.
const maxRelative = 30 * 24 * 60 * 60

// maxCASAttempts bounds one counter's compare-and-swap loop. Within a
// process increments of one key are serialised, so only other processes can
// make it retry; reaching the bound returns ErrUnavailable (nothing written).
const maxCASAttempts = 64

// testHookBeforeWrite, when set by a test, runs before a counter's "add" or
// "cas" (with the counter's key) and before an index compaction's write
// (with the shard's full key), to let a test lose the race
// deterministically.
var testHookBeforeWrite func(s *Store, key string)

// stripes is the number of in-process locks that serialise the
// compare-and-swap loops of keys hashing to them.
const stripes = 1024

// Options configures a Store. The zero value (or nil) is usable.
type Options struct {
	// Prefix starts every Memcached key the Store writes, so that several
	// applications can share servers. 0..MaxPrefixLen bytes of printable
	// ASCII without spaces. Default: none.
	Prefix string
	// Logger receives the eviction warnings and index overflow warnings.
	// Default: slog.Default().
	Logger *slog.Logger
	// Servers are the addresses ("host:port" or a Unix socket path) whose
	// "stats" the Store polls for evictions. Open sets them from the URL;
	// with New, leave empty to disable the eviction check.
	Servers []string
	// EvictionCheck is how often the servers' eviction counters are polled
	// (by one background goroutine, never on a request). Default
	// DefaultEvictionCheck; negative disables the check.
	EvictionCheck time.Duration
	// IndexShards is the number of index keys per kind (blocks, counters)
	// that record which keys exist, for Scan. Default DefaultIndexShards.
	// Every Store sharing a prefix must use the same value.
	IndexShards int
	// IndexShardBytes is the size a compaction keeps an index key's value
	// within; keep it under the server's item size limit (-I, 1 MiB by
	// default). Default DefaultIndexShardBytes.
	IndexShardBytes int
	// IndexQueue bounds the counter index updates waiting for the
	// background indexer. Default DefaultIndexQueue.
	IndexQueue int
	// MaxInFlight bounds the calls that use the network at once; more wait
	// (until their context ends). Each holds up to two connections per
	// server, and Memcached refuses connections past its -c limit (1024 by
	// default). Default DefaultMaxInFlight.
	MaxInFlight int
}

// Store is a backend.Backend on one or several Memcached servers. It also
// implements backend.Reserver and backend.Blocker. It is safe for concurrent
// use.
type Store struct {
	c         *memcache.Client
	ownClient bool
	// oneServer: the client talks to exactly one server (known when Open
	// built it), so one "gets" reads its keys in order.
	oneServer  bool
	prefix     string
	log        *slog.Logger
	shards     int
	shardBytes int
	servers    []string
	evictEvery time.Duration

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
	calls     sync.WaitGroup // calls still running after their context ended (deadline.go)
	locks     [stripes]chan struct{}
	ixq       chan ixReq
	// grown counts the bytes this process appended to each index shard
	// since it last asked for the shard's compaction; [family][shard].
	grown        [2][]atomic.Int64
	compactEvery int64
	slots        chan struct{}

	ixDropped   atomic.Int64
	ixOverflow  atomic.Int64
	evictions   atomic.Int64
	lastDropLog atomic.Int64
	lastFullLog atomic.Int64
	connDrops   atomic.Int64
	lastConnLog atomic.Int64
}

// Stats are a Store's own counters of what it could not do and what the
// servers reported.
type Stats struct {
	// IndexDropped counts counter index updates dropped because the
	// indexer's queue was full or the servers failed: those counters may be
	// missing from Scan until they are next written after their indexed
	// expiry.
	IndexDropped int64
	// IndexOverflow counts keys left out of a full index shard.
	IndexOverflow int64
	// Evictions is the sum of the servers' eviction counters at the last
	// check.
	Evictions int64
	// ConnDrops counts the times the client's idle connections were all
	// dropped because one of them had been closed by its server (a server
	// restart): see the package documentation.
	ConnDrops int64
}

// New returns a Store that keeps its data on the servers of client. Set
// client.Timeout to the longest a single network operation may take (a call
// makes at most a few in sequence, see the package doc) and
// client.MaxIdleConns to at least the expected number of concurrent calls.
// Close does not close a client given to New. New fails with a
// backend.ErrInvalid error naming the option when opts is out of range.
func New(client *memcache.Client, opts *Options) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: memcached: nil client", backend.ErrInvalid)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if len(o.Prefix) > MaxPrefixLen {
		return nil, fmt.Errorf("%w: memcached: Options.Prefix is %d bytes, more than %d (Memcached keys are limited to %d bytes, engine keys take up to %d)",
			backend.ErrInvalid, len(o.Prefix), MaxPrefixLen, MaxKeyLen, backend.MaxKeyLen)
	}
	for i := 0; i < len(o.Prefix); i++ {
		if c := o.Prefix[i]; c <= 0x20 || c >= 0x7f {
			return nil, fmt.Errorf("%w: memcached: Options.Prefix %q has byte 0x%02x at %d (printable ASCII without spaces only)", backend.ErrInvalid, o.Prefix, c, i)
		}
	}
	if o.IndexShards < 0 || o.IndexShardBytes < 0 || o.IndexQueue < 0 || o.MaxInFlight < 0 {
		return nil, fmt.Errorf("%w: memcached: Options.IndexShards, IndexShardBytes, IndexQueue and MaxInFlight must not be negative", backend.ErrInvalid)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.IndexShards == 0 {
		o.IndexShards = DefaultIndexShards
	}
	if o.IndexShardBytes == 0 {
		o.IndexShardBytes = DefaultIndexShardBytes
	}
	if o.IndexQueue == 0 {
		o.IndexQueue = DefaultIndexQueue
	}
	if o.EvictionCheck == 0 {
		o.EvictionCheck = DefaultEvictionCheck
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Store{
		c:          client,
		prefix:     o.Prefix,
		log:        o.Logger,
		shards:     o.IndexShards,
		shardBytes: o.IndexShardBytes,
		servers:    append([]string(nil), o.Servers...),
		evictEvery: o.EvictionCheck,
		stop:       make(chan struct{}),
		ixq:        make(chan ixReq, o.IndexQueue),
		slots:      make(chan struct{}, o.MaxInFlight),
	}
	s.grown[0] = make([]atomic.Int64, s.shards)
	s.grown[1] = make([]atomic.Int64, s.shards)
	s.compactEvery = int64(max(s.shardBytes/8, 1))
	for i := range s.locks {
		s.locks[i] = make(chan struct{}, 1)
	}
	s.wg.Add(1)
	go s.indexer()
	if len(s.servers) > 0 && s.evictEvery > 0 {
		s.wg.Add(1)
		go s.watchEvictions()
	}
	return s, nil
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		IndexDropped:  s.ixDropped.Load(),
		IndexOverflow: s.ixOverflow.Load(),
		Evictions:     s.evictions.Load(),
		ConnDrops:     s.connDrops.Load(),
	}
}

// EachStat calls fn once per statistic of Stats, always the same names in
// the same order, with a one-line description and whether the value only
// grows (a counter) or goes up and down (a gauge). Metrics exporters use
// it: metrics/prometheus.Options.Store exports every statistic as
// defender_store_<name>.
func (s *Store) EachStat(fn func(name, help string, counter bool, value float64)) {
	st := s.Stats()
	fn("index_dropped_total", "Counter index updates the memcached store dropped (queue full or servers failing): those counters may be missing from listings.", true, float64(st.IndexDropped))
	fn("index_overflow_total", "Keys left out of a full memcached index shard (missing from listings).", true, float64(st.IndexOverflow))
	fn("server_evictions", "Sum of the memcached servers' eviction counters at the last check: evicted counters and blocks let attackers in again.", false, float64(st.Evictions))
	fn("conn_drops_total", "Times the memcached store dropped its idle connections after finding one closed by its server (a restart).", true, float64(st.ConnDrops))
}

// Close stops the background goroutines (after one last attempt to write
// pending counter index updates) and waits for them. It closes the client's
// idle connections only when the Store opened the client itself (Open).
// Further calls return backend.ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.calls.Wait()
		s.wg.Wait()
		if s.ownClient {
			_ = s.c.Close()
		}
	})
	return nil
}

// entry is a decoded value.
type entry struct {
	flags uint32
	exp   int64 // Unix ms; 0 = never
	ix    int64 // counters: indexed until (Unix ms); 0 = permanently; -1 = not indexed
	n     int64 // counters: the count
	value []byte
}

func (e *entry) alive(nowMs int64) bool { return e.exp == 0 || (e.exp > nowMs && e.flags != flagTomb) }

// ttl is the time left, rounded up to whole seconds; 0 = never expires.
func (e *entry) ttl(nowMs int64) time.Duration {
	if e.exp == 0 {
		return 0
	}
	left := e.exp - nowMs
	return time.Duration((left+999)/1000) * time.Second
}

// errCorrupt marks a value under one of our keys that we did not write.
var errCorrupt = errors.New("value not written by this package")

func decode(it *memcache.Item) (entry, error) {
	e := entry{flags: it.Flags}
	v := it.Value
	switch it.Flags {
	case flagCounter, flagBlock:
	case flagTomb:
		e.exp = -1 // never alive
		return e, nil
	default:
		return e, errCorrupt
	}
	exp, rest, ok := cutInt(v)
	if !ok {
		return e, errCorrupt
	}
	e.exp = exp
	if it.Flags == flagBlock {
		e.value = rest
		return e, nil
	}
	ix, rest, ok := cutInt(rest)
	if !ok {
		return e, errCorrupt
	}
	n, err := strconv.ParseInt(string(rest), 10, 64)
	if err != nil {
		return e, errCorrupt
	}
	e.ix, e.n, e.value = ix, n, rest
	return e, nil
}

// cutInt parses the decimal integer before the first space of v.
func cutInt(v []byte) (int64, []byte, bool) {
	for i, c := range v {
		if c == ' ' {
			n, err := strconv.ParseInt(string(v[:i]), 10, 64)
			return n, v[i+1:], err == nil
		}
	}
	return 0, nil, false
}

func encodeCounter(exp, ix, n int64) []byte {
	b := make([]byte, 0, 48)
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, ix, 10)
	b = append(b, ' ')
	return strconv.AppendInt(b, n, 10)
}

func encodeBlock(exp int64, value []byte) []byte {
	b := make([]byte, 0, 21+len(value))
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, ' ')
	return append(b, value...)
}

// ttlSeconds is ttl rounded up to whole seconds.
func ttlSeconds(ttl time.Duration) int64 {
	s := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		s++
	}
	return s
}

// expiry returns the encoded expiry (Unix ms, 0 = never) and the Memcached
// expiration for a TTL of secs whole seconds from now. Memcached's clock
// ticks once a second, so it is given one second more than the encoded
// expiry, which decides visibility: a key is never dropped early, and every
// expiring key carries an expiration. Over 30 days the expiration is an
// absolute Unix time (capped at the largest one Memcached takes).
func expiry(now time.Time, secs int64) (int64, int32) {
	if secs == 0 {
		return 0, 0
	}
	if secs > math.MaxInt32 {
		secs = math.MaxInt32
	}
	exp := now.UnixMilli() + secs*1000
	rel := secs + 1
	if rel <= maxRelative {
		return exp, int32(rel)
	}
	abs := now.Unix() + rel
	if abs > math.MaxInt32 {
		abs = math.MaxInt32
	}
	return exp, int32(abs)
}

func (s *Store) key(k string) string { return s.prefix + k }

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return backend.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcached: %w: %w", backend.ErrUnavailable, err)
	}
	return nil
}

// acquire takes one of the MaxInFlight slots, or fails when ctx ends first.
func (s *Store) acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return unavailable(ctx, "waiting for a connection slot", ctx.Err())
	}
}

func (s *Store) release() { <-s.slots }

func checkKeys(keys []string) error {
	if err := backend.CheckKeys(keys); err != nil {
		return fmt.Errorf("memcached: %w", err)
	}
	return nil
}

// unavailable wraps a client error as backend.ErrUnavailable, and ctx.Err()
// too when the context ended meanwhile.
func unavailable(ctx context.Context, op string, err error) error {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded // passed, its timer not yet run
	}
	if cerr != nil {
		return fmt.Errorf("memcached: %s: %w: %w (%v)", op, backend.ErrUnavailable, cerr, err)
	}
	return fmt.Errorf("memcached: %s: %w: %v", op, backend.ErrUnavailable, err)
}

func corrupt(key string) error {
	return fmt.Errorf("memcached: key %q: %w: %w", key, backend.ErrInvalid, errCorrupt)
}

// isMiss reports the protocol answers that mean "not there / changed".
func isMiss(err error) bool {
	return errors.Is(err, memcache.ErrCacheMiss) || errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrCASConflict)
}

func (s *Store) getMulti(ctx context.Context, op string, keys []string) (map[string]*memcache.Item, error) {
	pk := make([]string, len(keys))
	for i, k := range keys {
		pk[i] = s.key(k)
	}
	m, err := s.getMany(ctx, pk)
	if err != nil {
		return nil, unavailable(ctx, op, err)
	}
	return m, nil
}

func (s *Store) toEntry(key string, it *memcache.Item, nowMs int64) (backend.Entry, error) {
	if it == nil {
		return backend.Entry{Key: key}, nil
	}
	e, err := decode(it)
	if err != nil {
		return backend.Entry{Key: key}, corrupt(key)
	}
	if !e.alive(nowMs) {
		return backend.Entry{Key: key}, nil
	}
	return backend.Entry{Key: key, Found: true, Value: e.value, TTL: e.ttl(nowMs)}, nil
}

// Get implements backend.Backend: one multi-key "gets" (one round trip per
// server, the servers in parallel).
func (s *Store) doGet(ctx context.Context, keys []string) ([]backend.Entry, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	out := make([]backend.Entry, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	m, err := s.getMulti(ctx, "get", keys)
	if err != nil {
		return nil, err
	}
	nowMs := time.Now().UnixMilli()
	for i, k := range keys {
		if out[i], err = s.toEntry(k, m[s.key(k)], nowMs); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SetBlock implements backend.Backend in two round trips: the value is
// written ("set"), then the key is recorded in its block index shard
// ("append").
func (s *Store) doSetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckKey(key); err != nil {
		return fmt.Errorf("memcached: %w", err)
	}
	if err := backend.CheckTTL(ttl); err != nil {
		return fmt.Errorf("memcached: %w", err)
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	return s.setBlock(ctx, key, value, ttl)
}

// setBlock writes the block, then records it in its index shard. In that
// order: a compaction drops members it finds absent, so a member must never
// be listed before its key exists.
func (s *Store) setBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	exp, expiration := expiry(time.Now(), ttlSeconds(ttl))
	item := &memcache.Item{Key: s.key(key), Value: encodeBlock(exp, value), Flags: flagBlock, Expiration: expiration}
	if err := s.wrote(s.c.Set(item)); err != nil {
		return unavailable(ctx, "set block", err)
	}
	return s.appendIndex(ctx, familyBlocks, s.shardOf(key), map[string]int64{key: exp})
}

// Delete implements backend.Backend: one write per key, the keys in
// parallel. A deleted key is replaced by a tombstone that reads as absent
// and disappears after a few seconds: a reservation that read the key before
// the delete then cannot recreate it with "add" (see Reserve). Index entries
// of deleted keys are dropped lazily.
func (s *Store) doDelete(ctx context.Context, keys ...string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := checkKeys(keys); err != nil {
		return err
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	return parallel(len(keys), func(i int) error { return s.bury(ctx, keys[i]) })
}

// bury replaces key by a tombstone.
func (s *Store) bury(ctx context.Context, key string) error {
	if err := s.wrote(s.c.Set(&memcache.Item{Key: s.key(key), Value: []byte("-"), Flags: flagTomb, Expiration: tombstoneLife})); err != nil {
		return unavailable(ctx, "delete", err)
	}
	return nil
}

// parallel runs f(0..n-1), all but the first in their own goroutines, and
// returns the first error.
func parallel(n int, f func(i int) error) error {
	switch n {
	case 0:
		return nil
	case 1:
		return f(0)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(i) }()
	}
	errs[0] = f(0)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Incr implements backend.Backend: one multi-key "gets" for all keys, then
// per key (in parallel) one "cas" ("add" for an absent key) that writes the
// new count and its expiry together. A lost race re-reads and retries.
func (s *Store) doIncr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	if err := backend.CheckTTL(ttl); err != nil {
		return nil, fmt.Errorf("memcached: %w", err)
	}
	out := make([]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	readAt := time.Now()
	m, err := s.getMulti(ctx, "incr", keys)
	if err != nil {
		return nil, err
	}
	if err := s.incrAll(ctx, keys, m, readAt, delta, ttl, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) incrAll(ctx context.Context, keys []string, m map[string]*memcache.Item, readAt time.Time, delta int64, ttl time.Duration, out []int64) error {
	return parallel(len(keys), func(i int) error {
		var err error
		out[i], _, _, err = s.incrOne(ctx, keys[i], m[s.key(keys[i])], readAt, delta, ttl, true)
		return err
	})
}

func stripeOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % stripes)
}

// incrOne adds delta to key with a compare-and-swap loop, starting from it
// (the item read just before, nil when absent; the read began at readAt). A successful "cas" proves
// the key unchanged since the read; a successful "add" proves it absent, and
// since deletes leave tombstones that live longer than tombstoneGuard, that
// it was not deleted since the read either. A lost race re-reads (retried
// reports it). With create false, an absent key is left absent (wrote
// false).
//
// Increments of one key are serialised within the process (a striped
// lock; a caller that had to wait for it reads again first), so the loop
// only retries against other processes, after a jittered back-off.
func (s *Store) incrOne(ctx context.Context, key string, it *memcache.Item, readAt time.Time, delta int64, ttl time.Duration, create bool) (n int64, wrote, retried bool, err error) {
	lock := s.locks[stripeOf(key)]
	// Having waited for the lock, the read is most likely stale (another
	// goroutine incremented the key meanwhile): read again rather than
	// send a cas bound to fail.
	stale := false
	select {
	case lock <- struct{}{}:
	default:
		select {
		case lock <- struct{}{}:
			stale = true
		case <-ctx.Done():
			return 0, false, false, unavailable(ctx, "incr", ctx.Err())
		}
	}
	defer func() { <-lock }()
	pk := s.key(key)
	secs := ttlSeconds(ttl)
	for attempt := 0; ; attempt++ {
		now := time.Now()
		if !stale && now.Sub(readAt) < tombstoneGuard {
			nowMs := now.UnixMilli()
			exp, expiration := expiry(now, secs)
			var cur int64
			ix := int64(-1)
			live := false
			if it != nil {
				e, err := decode(it)
				if err != nil || (e.flags != flagCounter && e.flags != flagTomb) {
					return 0, false, retried, corrupt(key)
				}
				if e.alive(nowMs) {
					cur, ix, live = e.n, e.ix, true
				}
			}
			if !live && !create {
				return 0, false, retried, nil
			}
			n := cur + delta
			if (delta > 0 && n < cur) || (delta < 0 && n > cur) {
				return 0, false, retried, fmt.Errorf("memcached: incr %q: %w: counter overflow", key, backend.ErrInvalid)
			}
			newIx, reindex := indexPlan(ix, exp, secs)
			item := &memcache.Item{Key: pk, Value: encodeCounter(exp, newIx, n), Flags: flagCounter, Expiration: expiration}
			if testHookBeforeWrite != nil {
				testHookBeforeWrite(s, key)
			}
			if cerr := ctx.Err(); cerr != nil {
				// The caller has given up (deadline.go): a call it was
				// told failed never counts afterwards.
				return 0, false, retried, unavailable(ctx, "incr", cerr)
			}
			if it == nil {
				err = s.wrote(s.c.Add(item))
			} else {
				item.CasID = it.CasID
				err = s.wrote(s.c.CompareAndSwap(item))
			}
			if err == nil {
				if reindex {
					s.enqueueIndex(key, newIx)
				}
				return n, true, retried, nil
			}
			if !isMiss(err) {
				return 0, false, retried, unavailable(ctx, "incr", err)
			}
			// Lost a race: re-read and try again.
			if attempt+1 >= maxCASAttempts {
				return 0, false, retried, fmt.Errorf("memcached: incr %q: %w: %d compare-and-swap conflicts in a row", key, backend.ErrUnavailable, maxCASAttempts)
			}
			if attempt > 0 {
				if err := backoff(ctx, attempt); err != nil {
					return 0, false, retried, unavailable(ctx, "incr", err)
				}
			}
		}
		// The read is too old to prove anything against a tombstone that
		// may have expired since, or lost a race: read again.
		if err := ctx.Err(); err != nil {
			return 0, false, retried, unavailable(ctx, "incr", err)
		}
		retried, stale = true, false
		readAt = time.Now()
		it, err = s.get(ctx, pk)
		if errors.Is(err, memcache.ErrCacheMiss) {
			it = nil
		} else if err != nil {
			return 0, false, retried, unavailable(ctx, "incr", err)
		}
	}
}

// backoff sleeps a random time up to 100µs·2^attempt (at most 20ms) or
// until ctx ends.
func backoff(ctx context.Context, attempt int) error {
	limit := 100 * time.Microsecond << min(attempt, 8)
	if limit > 20*time.Millisecond {
		limit = 20 * time.Millisecond
	}
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// indexPlan decides whether a counter written with expiry exp (Unix ms, 0 =
// never) and a TTL of secs must be (re)recorded in the counter index, given
// what its value says is recorded (ix: until Unix ms, 0 = permanently, -1 =
// not). A counter is recorded until one TTL past its expiry, so that a
// counter incremented steadily is re-recorded once per TTL, not on every
// increment.
func indexPlan(ix, exp, secs int64) (int64, bool) {
	if exp == 0 {
		return 0, ix != 0
	}
	if ix == -1 || (ix > 0 && exp > ix) {
		return exp + secs*1000, true
	}
	return ix, false
}

// Reserve implements backend.Reserver in two round trips (one when a block
// exists): one multi-key "gets" of the counters and the blocks, then, when
// no block exists, one "cas" per counter in parallel with a second read of
// the blocks. On a single server opened by Open the second read is left
// out: there the "gets" reads the counters before the blocks (a server
// reads the keys of one command in order), which is all the argument below
// needs.
//
// Why this keeps the ordering rule of backend.Reserve, even across servers
// whose reads are not ordered: the cas (or add) proves the counter unchanged
// (or absent, and not deleted: deletes leave tombstones) since the first
// read, and the second block read starts after the first read ended. Block
// sets the block before it deletes the counter; if that delete came before
// the first read, the block is seen by the second; if it came after the
// write, the attempt counted on top of the blocking one; in between, the
// write fails and is retried (followed by a third block read). When a block
// is seen after counting, the counters are refunded.
func (s *Store) doReserve(ctx context.Context, r *backend.Reservation) error {
	r.Blocked = -1
	r.Block = backend.Entry{}
	r.Counts = r.Counts[:0]
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("memcached: %w", err)
	}
	if len(r.Blocks)+len(r.Counters) == 0 {
		return nil
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	keys := make([]string, 0, len(r.Blocks)+len(r.Counters))
	keys = append(append(keys, r.Counters...), r.Blocks...)
	readAt := time.Now()
	m, err := s.getMulti(ctx, "reserve", keys)
	if err != nil {
		return err
	}
	if i, e, err := s.findBlock(r.Blocks, m); err != nil || i >= 0 {
		r.Blocked, r.Block = i, e
		return err
	}
	if len(r.Counters) == 0 {
		return nil
	}
	nc := len(r.Counters)
	counts := append(r.Counts, make([]int64, nc)...)
	wrote := make([]bool, nc)
	var anyRetried atomic.Bool
	blocked, block := -1, backend.Entry{}
	tasks := nc
	if len(r.Blocks) > 0 && !s.oneServer {
		tasks++
	}
	err = parallel(tasks, func(i int) error {
		if i == nc {
			var err error
			blocked, block, err = s.readBlocks(ctx, r.Blocks)
			return err
		}
		var retried bool
		var err error
		counts[i], wrote[i], retried, err = s.incrOne(ctx, r.Counters[i], m[s.key(r.Counters[i])], readAt, 1, r.TTL, true)
		if retried {
			anyRetried.Store(true)
		}
		return err
	})
	if err != nil {
		return err
	}
	if blocked < 0 && anyRetried.Load() && len(r.Blocks) > 0 {
		if blocked, block, err = s.readBlocks(ctx, r.Blocks); err != nil {
			return err
		}
	}
	if blocked >= 0 {
		// A block appeared: give back what was counted.
		err := parallel(nc, func(i int) error {
			if !wrote[i] {
				return nil
			}
			return s.refund(ctx, r.Counters[i], r.TTL)
		})
		if err != nil {
			return err
		}
		r.Blocked, r.Block = blocked, block
		return nil
	}
	r.Counts = counts
	return nil
}

// findBlock returns the index and entry of the first block of blocks that
// exists in m, or -1.
func (s *Store) findBlock(blocks []string, m map[string]*memcache.Item) (int, backend.Entry, error) {
	nowMs := time.Now().UnixMilli()
	for i, k := range blocks {
		e, err := s.toEntry(k, m[s.key(k)], nowMs)
		if err != nil {
			return -1, backend.Entry{}, err
		}
		if e.Found {
			return i, e, nil
		}
	}
	return -1, backend.Entry{}, nil
}

func (s *Store) readBlocks(ctx context.Context, blocks []string) (int, backend.Entry, error) {
	m, err := s.getMulti(ctx, "reserve", blocks)
	if err != nil {
		return -1, backend.Entry{}, err
	}
	return s.findBlock(blocks, m)
}

// refund takes back one count from key, unless it is gone meanwhile.
func (s *Store) refund(ctx context.Context, key string, ttl time.Duration) error {
	readAt := time.Now()
	it, err := s.get(ctx, s.key(key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	} else if err != nil {
		return unavailable(ctx, "reserve: refund", err)
	}
	_, _, _, err = s.incrOne(ctx, key, it, readAt, -1, ttl, false)
	return err
}

// Block implements backend.Blocker in four round trips: "gets" and "cas"
// of the lockout count, the block's "set", then, in parallel, its index
// shard's "append" and the failure counter's deletion (after the block is
// set, as the ordering rule of backend.Reserve requires).
func (s *Store) doBlock(ctx context.Context, req backend.BlockRequest) (backend.BlockResult, error) {
	if err := req.Validate(); err != nil {
		return backend.BlockResult{}, fmt.Errorf("memcached: %w", err)
	}
	if err := s.check(ctx); err != nil {
		return backend.BlockResult{}, err
	}
	if err := s.acquire(ctx); err != nil {
		return backend.BlockResult{}, err
	}
	defer s.release()
	if req.IfAbsent {
		// Claim the block key with add (stored only where no item is):
		// of racing conditional blocks, one claims it and escalates;
		// the others find the block and change nothing. The claim is a
		// block of the first duration until the real one replaces it.
		cexp, cexpiration := expiry(time.Now(), ttlSeconds(req.Durations[0]))
		claim := &memcache.Item{Key: s.key(req.BlockKey), Value: encodeBlock(cexp, req.Value), Flags: flagBlock, Expiration: cexpiration}
		err := s.wrote(s.c.Add(claim))
		switch {
		case errors.Is(err, memcache.ErrNotStored):
			it, gerr := s.get(ctx, s.key(req.BlockKey))
			if gerr == nil {
				nowMs := time.Now().UnixMilli()
				if e, derr := decode(it); derr == nil && e.flags == flagBlock && e.alive(nowMs) {
					return backend.BlockResult{Duration: e.ttl(nowMs), Existing: true}, nil
				}
			} else if !errors.Is(gerr, memcache.ErrCacheMiss) {
				return backend.BlockResult{}, unavailable(ctx, "block", gerr)
			}
			// A tombstone or an expired item holds the key: block.
		case err != nil:
			return backend.BlockResult{}, unavailable(ctx, "block: add", err)
		}
	}
	readAt := time.Now()
	it, err := s.get(ctx, s.key(req.LockoutsKey))
	if errors.Is(err, memcache.ErrCacheMiss) {
		it = nil
	} else if err != nil {
		return backend.BlockResult{}, unavailable(ctx, "block", err)
	}
	n, _, _, err := s.incrOne(ctx, req.LockoutsKey, it, readAt, 1, req.Window, true)
	if err != nil {
		return backend.BlockResult{}, err
	}
	res := backend.BlockResult{Lockouts: n, Duration: backend.Escalate(req.Durations, n)}
	exp, expiration := expiry(time.Now(), ttlSeconds(res.Duration))
	item := &memcache.Item{Key: s.key(req.BlockKey), Value: encodeBlock(exp, req.Value), Flags: flagBlock, Expiration: expiration}
	if err := s.wrote(s.c.Set(item)); err != nil {
		return res, unavailable(ctx, "block: set", err)
	}
	// Only now the counter goes (the ordering rule of backend.Reserve),
	// while the block is indexed.
	return res, parallel(2, func(i int) error {
		if i == 0 {
			return s.appendIndex(ctx, familyBlocks, s.shardOf(req.BlockKey), map[string]int64{req.BlockKey: exp})
		}
		if req.CounterKey == "" {
			return nil
		}
		return s.bury(ctx, req.CounterKey)
	})
}

var (
	_ backend.Backend  = (*Store)(nil)
	_ backend.Reserver = (*Store)(nil)
	_ backend.Blocker  = (*Store)(nil)
)
