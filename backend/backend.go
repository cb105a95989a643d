package backend

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// MaxKeyLen is the longest key the engine ever passes to a Backend, in bytes.
// Keys are 1..MaxKeyLen bytes of printable ASCII (0x21..0x7e): no spaces, no
// control bytes, so they are safe for every store (Memcached allows 250 bytes).
// A backend that adds its own namespace prefix must keep prefix+key within its
// store's limit.
const MaxKeyLen = 200

// Sentinel errors. Backends wrap them with %w and context; callers match them
// with errors.Is.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("backend: closed")
	// ErrUnavailable means the store could not be reached or did not answer
	// in time. The engine's fail mode applies.
	ErrUnavailable = errors.New("backend: store unavailable")
	// ErrInvalid means an argument broke the contract (an empty or over-long
	// key, a key with a space or control byte, a negative TTL).
	ErrInvalid = errors.New("backend: invalid argument")
	// ErrInvalidURL means a store URL could not be used: unknown scheme,
	// unknown query parameter, malformed host list. The message holds the
	// redacted URL.
	ErrInvalidURL = errors.New("backend: invalid store URL")
	// ErrFull means the store refused a new key because it is at its
	// configured bound and could not make room without dropping a block.
	ErrFull = errors.New("backend: store full")
)

// Entry describes one key as the store sees it.
type Entry struct {
	// Key is the key, exactly as it was written.
	Key string
	// Found reports whether the key exists (and has not expired).
	Found bool
	// Value is a block's value as given to SetBlock, or a counter's value
	// in decimal ASCII (as from strconv.FormatInt).
	Value []byte
	// TTL is the time left before the key expires, rounded up to the store's
	// resolution, or 0 when the key never expires. Always > 0 for an
	// expiring key that is Found.
	TTL time.Duration
}

// Backend is the storage contract. Implementations know nothing about logins:
// they store integer counters and opaque block values under keys, each with
// its own time to live. All methods are safe for concurrent use, take the
// context first, honour its deadline and cancellation (returning an error
// that wraps ctx.Err() or ErrUnavailable), and return ErrClosed after Close.
//
// Absence is a result, never an error. An expired key behaves exactly as an
// absent one for every method. No key ever exists without the TTL it was last
// written with: a value and its expiry are written atomically.
//
// The conformance package (conformance.Run) is the executable specification
// of this interface.
type Backend interface {
	// Incr atomically adds delta (which may be negative) to each counter in
	// keys and returns the new values in the same order. An absent counter
	// starts at 0. Every call restarts each key's TTL at ttl (a sliding
	// window); ttl == 0 makes the key persistent. Each key is incremented
	// atomically; several keys in one call need not be atomic together, but
	// concurrent calls never lose an increment. A negative ttl is ErrInvalid.
	// On a store error the caller cannot know whether the increment happened:
	// implementations never retry it blindly.
	Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error)

	// SetBlock stores value under key with the given TTL, replacing any
	// value and restarting the TTL (a re-block restarts the clock). ttl == 0
	// means the key never expires (a permanent block).
	SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// Get returns one Entry per key, in order. Absent and expired keys have
	// Found == false. Get never extends a TTL.
	Get(ctx context.Context, keys []string) ([]Entry, error)

	// Delete removes the keys. Deleting an absent key is not an error.
	Delete(ctx context.Context, keys ...string) error

	// Scan lists live keys starting with prefix, one page at a time. Start
	// with cursor ""; a returned next cursor of "" means the scan is done.
	// A page holds at most limit entries (limit <= 0: a backend default) and
	// may hold fewer, even none, while more remain. Every key that exists
	// for the whole scan is returned at least once; a key deleted or expired
	// during the scan may or may not be; no returned entry is expired at the
	// time it is read. Entries carry Value and TTL as Get would. Glob
	// characters in prefix (* ? [ ] { }) are literal.
	Scan(ctx context.Context, prefix, cursor string, limit int) (entries []Entry, next string, err error)

	// Close releases the backend's resources and waits for its goroutines.
	// Further calls return ErrClosed. Close is idempotent.
	Close() error
}

// Immediate is an optional interface for in-process backends whose calls
// never wait for I/O (the memory backend). When Immediate reports true, the
// engine calls the backend without a per-call deadline, saving a timer on
// every login; the backend must then still honour a context that has ended
// (the conformance suite checks it) but may never block. A backend that can
// wait for a network, a disk or a lock held across I/O must not implement
// Immediate, or must report false: the engine's StoreTimeout, and so its
// fail mode, would no longer apply to it.
type Immediate interface {
	Immediate() bool
}

// KeyBorrower is an optional interface for backends that never keep a key
// string passed to them after the call returns: a key they store is copied
// (strings.Clone), a key they send is written out during the call. When
// BorrowsKeys reports true, the engine lends such a backend keys built in a
// buffer that it writes again for a later login, which saves an allocation
// per login; every other backend gets keys that are never written again, as
// Go strings are. The conformance suite checks the promise of a backend that
// makes it (Keys/Borrowed).
type KeyBorrower interface {
	BorrowsKeys() bool
}

// BorrowsKeys reports whether b implements KeyBorrower and says true.
func BorrowsKeys(b Backend) bool {
	kb, ok := b.(KeyBorrower)
	return ok && kb.BorrowsKeys()
}

// IsImmediate reports whether b implements Immediate and reports true.
func IsImmediate(b Backend) bool {
	im, ok := b.(Immediate)
	return ok && im.Immediate()
}

// CheckPrefix returns an ErrInvalid error unless prefix is "" or obeys the
// key rules of MaxKeyLen (no key can start with any other prefix). Backends
// call it on Scan's prefix.
func CheckPrefix(prefix string) error {
	if prefix == "" || validKey(prefix) {
		return nil
	}
	if len(prefix) > MaxKeyLen {
		return fmt.Errorf("%w: Scan prefix length %d over %d", ErrInvalid, len(prefix), MaxKeyLen)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c <= 0x20 || c >= 0x7f {
			return fmt.Errorf("%w: Scan prefix %q has byte 0x%02x at %d", ErrInvalid, prefix, c, i)
		}
	}
	return nil
}

// Reservation is the request and result of a login check: look at the block
// keys and, only when none of them exists, count one attempt on each counter.
type Reservation struct {
	// Blocks are the block keys to look at (input).
	Blocks []string
	// Counters are the counters to increment by one (input).
	Counters []string
	// TTL is the counters' sliding TTL; 0 = never expires (input).
	TTL time.Duration
	// TTLOnly says that the caller reads only Found and TTL of Block: a
	// backend may leave Block.Value nil instead of copying it (input).
	TTLOnly bool

	// Blocked is the index in Blocks of a block that exists, or -1 (output).
	Blocked int
	// Block is the entry of Blocks[Blocked] when Blocked >= 0 (output).
	Block Entry
	// Counts holds the new value of each counter, in order, when Blocked ==
	// -1 (output). Reserve reuses its capacity.
	Counts []int64
}

// Validate returns an ErrInvalid error when r breaks the contract: a
// negative TTL or an invalid key. Reserver implementations call it first.
func (r *Reservation) Validate() error {
	if err := CheckTTL(r.TTL); err != nil {
		return err
	}
	if err := CheckKeys(r.Blocks); err != nil {
		return err
	}
	return CheckKeys(r.Counters)
}

// Reserver is an optional interface for backends that can check blocks and
// count an attempt in one round trip. Reserve has the semantics of the
// package function Reserve, including its ordering rule.
type Reserver interface {
	Reserve(ctx context.Context, r *Reservation) error
}

// Reserve performs r on b: through b's Reserver implementation when it has
// one, otherwise with the core methods. On return r.Blocked and r.Block, or
// r.Counts, are set. When a block exists, no counter stays incremented.
//
// Ordering rule (what makes reserve-before-verify exact): for each i, the
// reservation must read Blocks[i] no earlier than it increments
// Counters[i], or do both atomically. Block sets a block before it deletes
// the counter, so an attempt racing with Block then either sees the block or
// counts on top of the attempt that is blocking (and is refused as over the
// limit); it can never start a fresh counter behind a new block. The
// fallback therefore increments first, then reads the blocks, and refunds
// its increments (Incr by -1) when a block exists.
func Reserve(ctx context.Context, b Backend, r *Reservation) error {
	if rs, ok := b.(Reserver); ok {
		return rs.Reserve(ctx, r)
	}
	r.Blocked = -1
	r.Block = Entry{}
	r.Counts = r.Counts[:0]
	var counts []int64
	if len(r.Counters) > 0 {
		var err error
		if counts, err = b.Incr(ctx, r.Counters, 1, r.TTL); err != nil {
			return err
		}
	}
	if len(r.Blocks) > 0 {
		es, err := b.Get(ctx, r.Blocks)
		if err != nil {
			return err
		}
		for i, e := range es {
			if e.Found {
				r.Blocked, r.Block = i, e
				if len(r.Counters) > 0 {
					if _, err := b.Incr(ctx, r.Counters, -1, r.TTL); err != nil {
						return err
					}
				}
				return nil
			}
		}
	}
	r.Counts = append(r.Counts, counts...)
	return nil
}

// BlockRequest asks to block one identity: escalate its lockout count, set
// the block with the duration that count selects, and drop its failure
// counter (so that, once the block expires, the identity starts afresh).
type BlockRequest struct {
	// BlockKey is the block to set.
	BlockKey string
	// Value is stored under BlockKey.
	Value []byte
	// CounterKey is the identity's failure counter, deleted by the block.
	// Empty: none.
	CounterKey string
	// LockoutsKey counts this identity's lockouts within Window.
	LockoutsKey string
	// Window is the TTL of LockoutsKey (ACCESS_ATTEMPT_EXPIRATION); 0 =
	// never expires.
	Window time.Duration
	// Durations is the escalation list: the n-th lockout lasts
	// Durations[min(n, len)-1]; a duration of 0 is permanent. Must not be
	// empty.
	Durations []time.Duration
	// IfAbsent, when set, makes the request conditional: if BlockKey
	// already holds a block, Block changes nothing (no escalation, no new
	// TTL, the counter is kept) and reports the existing block
	// (BlockResult.Existing). The engine sets it on every block, so that
	// two attempts that both find an identity over its limit escalate it
	// once.
	IfAbsent bool
}

// Validate returns an ErrInvalid error when req breaks the contract: an
// empty Durations list, a negative Window or duration, an invalid key
// (CounterKey may be empty). Blocker implementations call it first.
func (req *BlockRequest) Validate() error {
	if len(req.Durations) == 0 {
		return fmt.Errorf("%w: BlockRequest.Durations is empty", ErrInvalid)
	}
	if err := CheckTTL(req.Window); err != nil {
		return err
	}
	for _, d := range req.Durations {
		if err := CheckTTL(d); err != nil {
			return err
		}
	}
	if err := CheckKeys([]string{req.BlockKey, req.LockoutsKey}); err != nil {
		return err
	}
	if req.CounterKey != "" {
		return CheckKey(req.CounterKey)
	}
	return nil
}

// BlockResult is what Block did.
type BlockResult struct {
	// Lockouts is the identity's lockout count, this one included (0 when
	// Existing and the backend did not read it).
	Lockouts int64
	// Duration is the block's TTL; 0 = permanent. When Existing, the
	// existing block's remaining TTL.
	Duration time.Duration
	// Existing reports that IfAbsent was set and a block was already
	// there: nothing was changed.
	Existing bool
}

// Blocker is an optional interface for backends that can perform a
// BlockRequest in one round trip, with the semantics of the package function
// Block.
type Blocker interface {
	Block(ctx context.Context, req BlockRequest) (BlockResult, error)
}

// Block performs req on b: through b's Blocker implementation when it has
// one, otherwise as Incr on LockoutsKey, SetBlock on BlockKey with the
// duration the new count selects, then Delete of CounterKey — in that order:
// the block is set before the counter goes (see the ordering rule of
// Reserve). With IfAbsent the fallback first reads BlockKey and stops when
// a block is there; that check and the block are not atomic together (two
// racing calls may both escalate), which a Blocker avoids by doing the
// whole request atomically.
func Block(ctx context.Context, b Backend, req BlockRequest) (BlockResult, error) {
	if err := req.Validate(); err != nil {
		return BlockResult{}, err
	}
	if bl, ok := b.(Blocker); ok {
		return bl.Block(ctx, req)
	}
	if req.IfAbsent {
		es, err := b.Get(ctx, []string{req.BlockKey})
		if err != nil {
			return BlockResult{}, err
		}
		if len(es) == 1 && es[0].Found {
			return BlockResult{Duration: es[0].TTL, Existing: true}, nil
		}
	}
	n, err := b.Incr(ctx, []string{req.LockoutsKey}, 1, req.Window)
	if err != nil {
		return BlockResult{}, err
	}
	res := BlockResult{Lockouts: n[0], Duration: Escalate(req.Durations, n[0])}
	if err := b.SetBlock(ctx, req.BlockKey, req.Value, res.Duration); err != nil {
		return res, err
	}
	if req.CounterKey != "" {
		if err := b.Delete(ctx, req.CounterKey); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Escalate returns the duration of the n-th lockout (n >= 1) under the
// escalation list durations: durations[n-1], or the last entry past the end.
func Escalate(durations []time.Duration, n int64) time.Duration {
	i := n - 1
	if i < 0 {
		i = 0
	}
	if i >= int64(len(durations)) {
		i = int64(len(durations)) - 1
	}
	return durations[i]
}
