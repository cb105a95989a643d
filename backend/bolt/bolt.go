package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/go-defender/defender/backend"
)

// Defaults used when the corresponding Options field is zero.
const (
	DefaultTimeout       = time.Second
	DefaultSweepInterval = time.Minute
	DefaultScanLimit     = 1000
)

const (
	// sweepBatch is how many expired keys one sweep transaction deletes.
	sweepBatch = 1000
	// scanExamine caps the keys one Scan page looks at, as a multiple of
	// its limit, so that a page over many expired keys stays short.
	scanExamine = 8
)

// ErrLocked means another process (or another Store in this process) holds
// the database file. The error names the file and how long Open waited.
var ErrLocked = errors.New("bolt: database file is locked by another process")

// bucket holds every key.
var bucket = []byte("defender")

// Options configures a Store. The zero value (or a nil *Options) is valid.
type Options struct {
	// Now is the store's clock. nil means time.Now. Expiry instants are
	// stored in unix nanoseconds of this clock.
	Now func() time.Time
	// Timeout is how long Open waits for the file lock held by another
	// process before it fails with ErrLocked. 0 means DefaultTimeout; a
	// negative value means do not wait.
	Timeout time.Duration
	// MaxBatchDelay makes the committer wait that long before each write
	// transaction, to gather more writes at the cost of latency. Default
	// 0: writes are group-committed as they come (the writes queued while
	// one transaction commits share the next), which is rarely worth
	// changing. Negative is an error.
	MaxBatchDelay time.Duration
	// MaxBatchSize bounds the writes committed in one transaction. 0
	// means DefaultMaxBatchSize; negative is an error.
	MaxBatchSize int
	// SweepInterval is how often a background goroutine deletes expired
	// keys. 0 means DefaultSweepInterval; negative starts no sweeper
	// (expired keys are then invisible but stay on disk until Sweep).
	SweepInterval time.Duration
	// NoSync skips the fsync of each commit. It is faster, still safe
	// against a crash of the process (kill -9: the page cache survives),
	// but an operating-system crash or power loss may then lose recent
	// writes or corrupt the file. Default false: every acknowledged write
	// is on disk.
	NoSync bool
}

// Store is a Backend persisted in one bbolt file. It implements
// backend.Backend, backend.Reserver and backend.Blocker; all methods are
// safe for concurrent use. Create it with Open.
type Store struct {
	db   *bbolt.DB
	path string
	now  func() int64

	mu     sync.RWMutex // R: an operation in progress; W: Close
	closed bool
	wg     sync.WaitGroup // the sweeper
	stop   chan struct{}
	cm     *committer
}

var (
	_ backend.Backend  = (*Store)(nil)
	_ backend.Reserver = (*Store)(nil)
	_ backend.Blocker  = (*Store)(nil)
)

// Open opens (creating it if need be, mode 0600) the database file at path
// and starts the sweeper. When another process holds the file, Open waits
// up to Options.Timeout and then fails with an error wrapping ErrLocked
// that names path; it never hangs.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	wait := o.Timeout
	if wait < 0 {
		wait = time.Nanosecond // bbolt: 0 would wait forever
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.MaxBatchSize < 0 || o.MaxBatchDelay < 0 {
		return nil, fmt.Errorf("%w: bolt: MaxBatchSize %d and MaxBatchDelay %v must not be negative", backend.ErrInvalid, o.MaxBatchSize, o.MaxBatchDelay)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: wait, NoSync: o.NoSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, path, max(o.Timeout, 0))
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path, now: clockOf(o.Now), stop: make(chan struct{})}
	s.cm = newCommitter(db, o.MaxBatchSize, o.MaxBatchDelay)
	if o.SweepInterval > 0 {
		s.wg.Add(1)
		go s.sweeper(o.SweepInterval)
	}
	return s, nil
}

func clockOf(now func() time.Time) func() int64 {
	if now == nil {
		now = time.Now
	}
	return func() int64 { return now().UnixNano() }
}

// Path returns the database file's path as given to Open.
func (s *Store) Path() string { return s.path }

// Value layout: expiry (8 bytes, big-endian unix nanoseconds, 0 = never),
// kind (1 byte), then the counter (8 bytes, big-endian two's complement)
// or the block's value.
const (
	kindCounter byte = 'c'
	kindBlock   byte = 'b'
	headerLen        = 9
)

type value struct {
	exp  int64
	kind byte
	n    int64
	val  []byte // aliases the transaction's memory
}

func decode(key, v []byte) (value, error) {
	if len(v) < headerLen {
		return value{}, fmt.Errorf("bolt: key %q: corrupt value of %d bytes", key, len(v))
	}
	d := value{exp: int64(binary.BigEndian.Uint64(v)), kind: v[8], val: v[headerLen:]}
	switch d.kind {
	case kindCounter:
		if len(d.val) != 8 {
			return value{}, fmt.Errorf("bolt: key %q: corrupt counter", key)
		}
		d.n = int64(binary.BigEndian.Uint64(d.val))
	case kindBlock:
	default:
		return value{}, fmt.Errorf("bolt: key %q: unknown kind %q", key, d.kind)
	}
	return d, nil
}

func (d *value) expired(now int64) bool { return d.exp != 0 && now >= d.exp }

func encodeCounter(exp, n int64) []byte {
	b := make([]byte, headerLen+8)
	binary.BigEndian.PutUint64(b, uint64(exp))
	b[8] = kindCounter
	binary.BigEndian.PutUint64(b[headerLen:], uint64(n))
	return b
}

func encodeBlock(exp int64, val []byte) []byte {
	b := make([]byte, headerLen+len(val))
	binary.BigEndian.PutUint64(b, uint64(exp))
	b[8] = kindBlock
	copy(b[headerLen:], val)
	return b
}

func expiry(now int64, ttl time.Duration) int64 {
	if ttl == 0 {
		return 0
	}
	return now + int64(ttl)
}

// entry converts a live value, copying it out of the transaction.
func (d *value) entry(key string, now int64) backend.Entry {
	e := backend.Entry{Key: key, Found: true}
	if d.kind == kindBlock {
		e.Value = bytes.Clone(d.val) // non-nil: d.val is a non-nil slice of the value
	} else {
		e.Value = strconv.AppendInt(nil, d.n, 10)
	}
	if d.exp != 0 {
		e.TTL = time.Duration(d.exp - now)
	}
	return e
}

// begin starts an operation: it holds s.mu for reading until end.
func (s *Store) begin(ctx context.Context) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return backend.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.mu.RUnlock()
		return fmt.Errorf("bolt: %w", err)
	}
	return nil
}

func (s *Store) end() { s.mu.RUnlock() }

func (s *Store) wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("%w: %v", backend.ErrClosed, err)
	case errors.Is(err, backend.ErrInvalid):
		return err
	default:
		return fmt.Errorf("%w: bolt %s: %v", backend.ErrUnavailable, s.path, err)
	}
}

// view runs fn in a read-only transaction: it never takes the write lock.
func (s *Store) view(fn func(b *bbolt.Bucket) error) error {
	return s.wrap(s.db.View(func(tx *bbolt.Tx) error { return fn(tx.Bucket(bucket)) }))
}

// update runs fn in the next group commit (see commit.go): one write
// transaction and one fsync shared with the writes queued at the same
// time. fn may run more than once and must compute its results afresh from
// the transaction and assign them, never accumulate. When ctx ends while
// the write is still queued, update abandons it and returns ctx's error:
// the write never happens. When the write was already taken into a
// transaction, update waits for that commit and returns its outcome even
// though ctx has ended. An error therefore always means nothing was
// written.
func (s *Store) update(ctx context.Context, fn func(b *bbolt.Bucket) error) error {
	cl := s.cm.submit(fn)
	select {
	case err := <-cl.err:
		return s.wrap(err)
	case <-ctx.Done():
		if cl.abandon() {
			return fmt.Errorf("bolt: %w (not written)", ctx.Err())
		}
		return s.wrap(<-cl.err)
	}
}

// incr adds delta to the counter key in b and returns the new value.
func incr(b *bbolt.Bucket, key string, delta int64, exp, now int64) (int64, error) {
	k := []byte(key)
	var n int64
	if v := b.Get(k); v != nil {
		d, err := decode(k, v)
		if err != nil {
			return 0, err
		}
		if !d.expired(now) {
			if d.kind == kindBlock {
				return 0, fmt.Errorf("%w: bolt: Incr on key %q, which holds a block", backend.ErrInvalid, key)
			}
			n = d.n
		}
	}
	n += delta
	return n, b.Put(k, encodeCounter(exp, n))
}

// live returns the live value of key in b, or ok == false.
func live(b *bbolt.Bucket, key string, now int64) (value, bool, error) {
	v := b.Get([]byte(key))
	if v == nil {
		return value{}, false, nil
	}
	d, err := decode([]byte(key), v)
	if err != nil || d.expired(now) {
		return value{}, false, err
	}
	return d, true, nil
}

// Incr implements backend.Backend. All keys of one call are incremented in
// one transaction (atomically together), batched with concurrent writes.
func (s *Store) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.end()
	if err := backend.CheckTTL(ttl); err != nil {
		return nil, err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return nil, err
	}
	var out []int64
	err := s.update(ctx, func(b *bbolt.Bucket) error {
		now := s.now()
		res := make([]int64, len(keys))
		for i, k := range keys {
			n, err := incr(b, k, delta, expiry(now, ttl), now)
			if err != nil {
				return err
			}
			res[i] = n
		}
		out = res
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetBlock implements backend.Backend, batched with concurrent writes.
func (s *Store) SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.end()
	if err := backend.CheckTTL(ttl); err != nil {
		return err
	}
	if err := backend.CheckKey(key); err != nil {
		return err
	}
	return s.update(ctx, func(b *bbolt.Bucket) error {
		return b.Put([]byte(key), encodeBlock(expiry(s.now(), ttl), value))
	})
}

// Get implements backend.Backend in one read-only transaction.
func (s *Store) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.end()
	if err := backend.CheckKeys(keys); err != nil {
		return nil, err
	}
	out := make([]backend.Entry, len(keys))
	err := s.view(func(b *bbolt.Bucket) error {
		now := s.now()
		for i, k := range keys {
			d, ok, err := live(b, k, now)
			if err != nil {
				return err
			}
			if ok {
				out[i] = d.entry(k, now)
			} else {
				out[i] = backend.Entry{Key: k}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete implements backend.Backend, batched with concurrent writes.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.end()
	if err := backend.CheckKeys(keys); err != nil {
		return err
	}
	return s.update(ctx, func(b *bbolt.Bucket) error {
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Reserve implements backend.Reserver. It first reads the blocks in a
// read-only transaction: a blocked request returns from there and never
// takes the write lock. Otherwise one batched write transaction reads the
// blocks again and increments the counters, atomically (the ordering rule
// of backend.Reserve); a block that appeared in between is reported and
// nothing is incremented.
func (s *Store) Reserve(ctx context.Context, r *backend.Reservation) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.end()
	if err := r.Validate(); err != nil {
		return err
	}
	r.Blocked = -1
	r.Block = backend.Entry{}
	r.Counts = r.Counts[:0]
	if len(r.Blocks) > 0 {
		var blocked int
		var blk backend.Entry
		if err := s.view(func(b *bbolt.Bucket) error {
			var err error
			blocked, blk, err = findBlock(b, r.Blocks, s.now())
			return err
		}); err != nil {
			return err
		}
		if blocked >= 0 {
			r.Blocked, r.Block = blocked, blk
			return nil
		}
	}
	if len(r.Counters) == 0 {
		return nil
	}
	// A write never outlives its call (see update): r's slices can be used.
	blocks, counters, ttl := r.Blocks, r.Counters, r.TTL
	var blocked int
	var blk backend.Entry
	var counts []int64
	err := s.update(ctx, func(b *bbolt.Bucket) error {
		now := s.now()
		bi, be, err := findBlock(b, blocks, now)
		if err != nil {
			return err
		}
		blocked, blk, counts = bi, be, nil
		if bi >= 0 {
			return nil
		}
		res := make([]int64, len(counters))
		for i, k := range counters {
			if res[i], err = incr(b, k, 1, expiry(now, ttl), now); err != nil {
				return err
			}
		}
		counts = res
		return nil
	})
	if err != nil {
		return err
	}
	if blocked >= 0 {
		r.Blocked, r.Block = blocked, blk
		return nil
	}
	r.Counts = append(r.Counts, counts...)
	return nil
}

// findBlock returns the index and entry of the first live key of blocks in
// b, or -1.
func findBlock(b *bbolt.Bucket, blocks []string, now int64) (int, backend.Entry, error) {
	for i, k := range blocks {
		d, ok, err := live(b, k, now)
		if err != nil {
			return -1, backend.Entry{}, err
		}
		if ok {
			return i, d.entry(k, now), nil
		}
	}
	return -1, backend.Entry{}, nil
}

// Block implements backend.Blocker: the lockout count, the block and the
// counter's deletion are one batched write transaction (with IfAbsent, the
// look at the block key too).
func (s *Store) Block(ctx context.Context, req backend.BlockRequest) (backend.BlockResult, error) {
	if err := req.Validate(); err != nil {
		return backend.BlockResult{}, err
	}
	if err := s.begin(ctx); err != nil {
		return backend.BlockResult{}, err
	}
	defer s.end()
	var res backend.BlockResult
	err := s.update(ctx, func(b *bbolt.Bucket) error {
		now := s.now()
		if req.IfAbsent {
			if i, e, err := findBlock(b, []string{req.BlockKey}, now); err != nil {
				return err
			} else if i == 0 {
				res = backend.BlockResult{Duration: e.TTL, Existing: true}
				return nil
			}
		}
		n, err := incr(b, req.LockoutsKey, 1, expiry(now, req.Window), now)
		if err != nil {
			return err
		}
		d := backend.Escalate(req.Durations, n)
		if err := b.Put([]byte(req.BlockKey), encodeBlock(expiry(now, d), req.Value)); err != nil {
			return err
		}
		if req.CounterKey != "" {
			if err := b.Delete([]byte(req.CounterKey)); err != nil {
				return err
			}
		}
		res = backend.BlockResult{Lockouts: n, Duration: d}
		return nil
	})
	if err != nil {
		return backend.BlockResult{}, err
	}
	return res, nil
}

// Scan implements backend.Backend in one read-only transaction per page,
// in key order. The cursor is "k" followed by the last key looked at. A
// page looks at no more than 8×limit keys, so a run of expired keys (not
// yet swept) yields short or empty pages rather than a long transaction.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]backend.Entry, string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, "", err
	}
	defer s.end()
	if cursor != "" && (cursor[0] != 'k' || len(cursor) == 1) {
		return nil, "", fmt.Errorf("%w: bolt: Scan cursor %q was not returned by this store", backend.ErrInvalid, cursor)
	}
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	var out []backend.Entry
	next := ""
	err := s.view(func(b *bbolt.Bucket) error {
		now := s.now()
		c := b.Cursor()
		p := []byte(prefix)
		var k, v []byte
		if cursor == "" {
			k, v = c.Seek(p)
		} else {
			after := []byte(cursor[1:])
			k, v = c.Seek(after)
			if bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		var last string
		for examined := 0; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if len(out) == limit || examined == scanExamine*limit {
				next = "k" + last // more keys match: resume after the last one looked at
				return nil
			}
			examined++
			last = string(k)
			d, err := decode(k, v)
			if err != nil {
				return err
			}
			if !d.expired(now) {
				out = append(out, d.entry(last, now))
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Sweep deletes every expired key now, in write transactions of at most
// 1000 keys found by read-only transactions (so checks are never held up
// for long), and returns how many it deleted. The background sweeper calls
// it; callers may too (for example a CLI cleanup command).
func (s *Store) Sweep(ctx context.Context) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.end()
	total := 0
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("bolt: %w", err)
		}
		var found [][]byte
		done := false
		err := s.view(func(b *bbolt.Bucket) error {
			now := s.now()
			c := b.Cursor()
			k, v := c.Seek(after)
			if after != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
			examined := 0
			var last []byte
			for ; k != nil && len(found) < sweepBatch && examined < scanExamine*sweepBatch; k, v = c.Next() {
				examined++
				last = k
				if d, err := decode(k, v); err == nil && d.expired(now) {
					found = append(found, bytes.Clone(k))
				}
			}
			after = bytes.Clone(last) // k and last are only valid in the transaction
			done = k == nil
			return nil
		})
		if err != nil {
			return total, err
		}
		if len(found) > 0 {
			var n int
			err := s.update(ctx, func(b *bbolt.Bucket) error {
				now := s.now()
				n = 0
				for _, k := range found {
					if v := b.Get(k); v != nil {
						if d, err := decode(k, v); err == nil && d.expired(now) {
							if err := b.Delete(k); err != nil {
								return err
							}
							n++
						}
					}
				}
				return nil
			})
			if err != nil {
				return total, err
			}
			total += n
		}
		if done {
			return total, nil
		}
	}
}

func (s *Store) sweeper(every time.Duration) {
	defer s.wg.Done()
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

// Close waits for the operations in progress, stops the sweeper and the
// committer (writes abandoned by their callers never run), and closes the
// file (releasing its lock).
// Later calls return backend.ErrClosed. Close is idempotent; the first
// call returns the file's close error, if any.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.wg.Wait()
	s.cm.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close %s: %w", s.path, err)
	}
	return nil
}
