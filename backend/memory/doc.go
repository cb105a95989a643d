// Package memory is an in-process defender store: exact counters and blocks
// in sharded maps, bounded in the number of keys, with expiry.
//
// Open it with New, or with backend.Open(ctx, "memory://") (optionally
// "memory://?max_keys=N"; any other parameter is an error). It implements
// backend.Backend and the optional backend.Reserver (the login check: look
// at the block keys, then count one attempt on each counter) and
// backend.Blocker (escalate the lockout count, set the block, drop the
// failure counter).
//
// # Concepts
//
// Keys live in 64 shards (fewer for a small bound), each a mutex, a map
// from the key's 64-bit hash (seeded per store; the same hash picks the
// shard, so a key is hashed once per call) to a slot, and a slab of slots
// {key, value, expiry, kind}. Every call
// takes each shard lock it needs once per key and never a lock over the
// whole store. Reserve handles the pairs (Blocks[i], Counters[i]) each
// under both shard locks at once (taken in shard order), so that reading
// the block and counting the attempt are atomic, as the ordering rule of
// backend.Reserve requires; a block found at a later pair refunds the
// earlier counters. Counts are exact: an increment is a
// read-modify-write under the shard lock, so concurrent increments are
// never lost. Each key carries its own expiry; an expired key behaves as
// absent everywhere, is removed when a call meets it (lazy expiry), and a
// background sweeper removes the others every Options.SweepInterval. Close
// stops the sweeper and waits for it.
//
// The store clock is Options.Now when given (tests use a fake clock).
// Otherwise it is the wall clock read once at New plus the monotonic time
// since: TTLs are durations, and a wall-clock step does not expire or
// extend them.
//
// # Memory pressure
//
// Options.MaxKeys (default 1<<20) bounds the number of keys, split evenly
// over the shards. Blocks and the lockout counts written by Block are
// pinned: never evicted, so a block the engine set is never silently lost
// before its TTL. Pinned keys may fill at most PinnedShare quarters (3/4)
// of each shard; the rest (at least a quarter) is reserved for failure
// counters, so that a new identity can always be counted: counters are
// never refused (Incr and Reserve never fail with backend.ErrFull), and a
// store full of blocks still counts, and lets in, every user who is not
// blocked.
//
// A new counter that finds its shard at its share first sweeps the
// shard's expired keys (at most once a second of store time), else drops
// an expired counter found at the head of a class list, else evicts a
// live counter: the one with the fewest failures, the least recently
// written among equals. This is exact, not sampled: every counter is on
// one doubly linked list per count (1 to 62 each, 0 and below, 63 and
// above), threaded through the slots, and the victim is the head of the
// lowest non-empty list, found in constant time. Writing a counter moves
// it to the tail of its list (two slot links, no allocation).
//
// A new block or lockout count that finds the pinned share of its shard
// full of live ones fails with backend.ErrFull and writes nothing (Block
// checks the room for both of its keys first); a shard found full of live
// pinned keys then refuses new ones without a scan until its first pinned
// key expires or one is deleted. No block is ever evicted to make room for another: evicting
// the soonest-expiring block would let an attacker unblock an address by
// blocking enough made-up names. The engine treats a refused Block like
// any failed one: the identity's failure counter is past its limit, so
// its next attempts are refused as over the limit until the counter
// expires, and that counter is among the last to be evicted (a high
// count). Existing pinned keys are always rewritten in place.
//
// Stats reports keys, pinned keys and their bound, evictions, expired keys
// removed and refused writes (EachStat lists them for metrics exporters:
// metrics/prometheus.Options.Store). The first eviction of a burst, and
// the first refusal, are logged as warnings on Options.Logger, or on
// slog.Default() when it is nil (a store opened by URL warns too), then
// at most once a minute while the burst lasts.
//
// What an attacker can and cannot do, with the engine's requests (two
// counters each, the address's and the username's):
//
//   - Junk identities with fewer failures than a victim counter never
//     evict it, however many: a count of c >= 2 survives any flood of
//     counts below c.
//   - Erasing a counter of count c takes made-up identities with at least
//     c failures each, enough to fill the shards' counter room: about
//     c·MaxKeys/2 requests (each creates two counters). A counter with one
//     failure is no different from junk and goes after about
//     MaxKeys/2 requests at the least recently written end.
//   - Filling the pinned share with blocks costs limit+1 requests per two
//     pinned keys (about 1.5·MaxKeys requests with the default limit of 3)
//     and shrinks the counter room to a quarter; it neither refuses users
//     nor makes an erasure cheaper than c·MaxKeys/2 for c <= 4.
//
// Measured by TestAttackerCost (MaxKeys 1000, requests to erase a victim
// counter of count c; -1: survived 50,000 requests; one run, the hashing
// is randomised):
//
//	strategy                      c=1    c=2    c=3   (before: sampled LFU)
//	junk at count 1               456    -1     -1    459, -1, -1
//	junk at count 2               1020   1120   -1    848, 700, -1
//	junk at count 3               1266   1290   1830  1731, 1503, 1152
//	blocks, then junk at count 1  1732   -1     -1    2047, 2459, 2112 (*)
//	blocks, then junk at count 3  2148   1945   1954  2299, 2104, 2088 (*)
//
// (*) the former policy (8 sampled counters, ErrFull when a shard held
// only blocks) also refused logins of users never blocked once the blocks
// filled a shard, and let junk at count 1 erase counts 2 and 3 there.
//
// The limit that remains: a flood spread over more identities than the
// bound makes the store forget failure counts; size MaxKeys for the attack
// you expect (the default, 2^20 keys at about 140 bytes each, makes
// erasing a count of 3 cost about 1.5 million requests). Remembering
// evicted counts in a compact structure that can only over-estimate (a
// count-min sketch) was rejected: a flood saturates it, and every new user
// would then start near the limit and be locked out by one mistake.
//
// Measured (Go 1.26, linux/amd64, 2 shared cores): about 140 bytes of
// heap per tracked counter with a 27-byte key (10^5 keys,
// runtime.ReadMemStats before and after, slab and map growth included);
// a flood of 10^6 distinct counters under MaxKeys 10^4 holds the bound,
// keeps all 4,000 blocks and lockout counts, and counts 994,000
// evictions, in under a second. The login hot path (Reserve of 2 block
// keys and 2 new counters, then Delete of both) takes about 300 ns and 2
// allocations (the copies of the 2 new keys) serially; Reserve of
// existing keys allocates nothing.
//
// # What an error means
//
// Calls never wait: the context is checked once, when a call starts, so a
// call that returns a context error wrote nothing, and one that started
// completes. Reserve and Incr that fail midway (a counter key that holds a
// block: backend.ErrInvalid) take back the counts they had made; Block and
// SetBlock refused with backend.ErrFull wrote nothing. A call racing with
// Close may return backend.ErrClosed after writing some keys, which Close
// discards anyway.
//
// # Why not ristretto
//
// The design card suggested github.com/dgraph-io/ristretto. It is not used:
// ristretto's Set is asynchronous (a value is not visible until its buffers
// are flushed, and Set may drop the write when the buffers are contended),
// and its admission policy (TinyLFU) may refuse a new key or evict any key,
// so a block or a failure count could be lost silently before its TTL, and
// an increment (a Get followed by a Set) is not atomic. The store must give
// exact counts and must never drop a block; wrapping ristretto to do that
// would leave it only a cost-accounting role, which a key count does more
// simply. Nothing in the store is non-critical enough to hand to it.
//
// # Scan
//
// Scan walks the shards in order and, within a shard, the matching keys in
// byte order; its cursor names the shard and the last key returned. A page
// locks one shard at a time for one pass over its slots and a sort of the
// matches after the cursor, so a scan never holds a lock across pages and
// never copies the store.
package memory
