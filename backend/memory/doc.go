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
// over the shards. A new key that finds its shard at its share first
// sweeps the shard's expired keys (at most once a second of store time),
// and when none was expired evicts a counter: the one with the smallest
// count, the soonest to expire among equals, out of 8 slots sampled at
// random (like Redis allkeys-lfu with maxmemory-samples), or out of the
// whole shard when the sample holds none. Blocks, and the lockout counts
// written by Block, are never evicted: a block the engine set is never
// silently lost before its TTL. When a shard holds nothing but blocks and
// lockout counts, a new key there fails with backend.ErrFull (writes to
// existing keys still succeed), and the shard answers ErrFull without a
// scan until a key is deleted or the first of its keys expires. Stats
// reports keys, evictions, expired keys removed and refused writes; an
// optional Options.Logger gets one warning per burst of evictions.
//
// Evicting a counter forgets failures: an attacker who spreads a flood
// over more keys than the bound can make the store forget the failure
// count of a key it is not currently hitting. Counters with more failures
// survive longer (the victim is the smallest sampled count), and every
// lockout that was reached stays. Size MaxKeys for the attack you expect.
//
// Measured (Go 1.26, linux/amd64, 2 shared cores): about 140 bytes of
// heap per tracked counter with a 27-byte key (10^5 keys,
// runtime.ReadMemStats before and after, slab and map growth included);
// a flood of 10^6 distinct counters under MaxKeys 10^4 holds the bound,
// keeps all 4,000 blocks and lockout counts, and counts 994,000
// evictions, in about a second. The login hot path (Reserve of 2 block
// keys and 2 new counters, then Delete of both) takes about 300 ns and 2
// allocations (the copies of the 2 new keys) serially.
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
