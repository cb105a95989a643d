// Package memcached is a defender backend on one or several Memcached
// servers, through github.com/bradfitz/gomemcache. It is for sites that
// already run Memcached; it implements backend.Backend and the optional
// backend.Reserver and backend.Blocker.
//
// Open it from a URL (the package registers the scheme "memcached"):
//
//	memcached://cache1:11211,cache2:11211?prefix=myapp:&timeout=1s&max_idle=64
//
// or with New on a *memcache.Client you configure (Timeout, MaxIdleConns,
// DialContext for TLS). Keys are spread over the servers by gomemcache's
// hash, without fail-over: when a server is down its share of the keys is
// unavailable (backend.ErrUnavailable, so the engine's fail mode applies)
// rather than silently re-homed with fresh counters. Changing the server
// list re-homes most keys: counters restart and blocks disappear from view,
// so change it in a quiet hour.
//
// # Values and expiry
//
// Memcached can neither report a key's remaining TTL nor increment a value
// together with its expiry, so every value carries its own expiry:
//
//	counter (flags 0xdef1): "<expiry-unix-ms> <indexed-until-unix-ms> <count>"
//	block   (flags 0xdef2): "<expiry-unix-ms> <value as given to SetBlock>"
//
// (expiry 0 = never). The encoded expiry decides visibility: a value whose
// expiry has passed is absent for every method, even while the server still
// holds it, and Get reports the time left rounded up to whole seconds. The
// server is given the same TTL rounded up to whole seconds, plus one second
// because its clock ticks once a second, so it never drops a key early and
// every expiring key carries an expiration: a sub-second TTL never becomes 0
// ("never expires"). TTLs over 30 days are sent as absolute Unix times, as
// Memcached requires (capped at 2038-01-19, the largest it takes). The
// expiry is written with the application's clock: keep the clocks of the
// hosts that share a store synchronised (NTP).
//
// # Counting exactly
//
// Incr is a compare-and-swap loop, not Memcached's incr: incr works only on
// plain decimal values, leaves the expiry alone (a second "touch" would be
// another round trip, and a crash between the two would leave the TTL
// stale), and cannot carry the encoded expiry. Instead one read ("gets")
// returns the value and its CAS id, and one write replaces count and expiry
// together: "add" when the key is absent (of many concurrent first
// increments exactly one add succeeds), "cas" otherwise (refused when anyone
// wrote the key since the read). The count and its TTL are therefore never
// out of step, and a key never exists without its expiration. A write that
// loses re-reads and retries; no increment is lost or doubled, and 1000
// concurrent first increments of one absent key end at exactly 1000 (see
// TestConcurrentFirstIncr, within one Store and across four). Within a
// process, increments of one key are serialised by a striped lock, and a
// call that had to wait for the lock reads the key again before writing, so
// a burst costs one gets+cas per increment instead of a retry storm; only
// other processes make the loop retry, after a jittered back-off, giving up
// (having written nothing) with ErrUnavailable after 64 lost races or when
// the context ends. A hot key (one username attacked from many addresses)
// is thus limited to about one increment per two round trips per process,
// and only until its block is set: from then on Reserve sees the block and
// writes nothing.
//
// Delete does not remove a key but replaces it with a tombstone (flags
// 0xdef4) that reads as absent and expires after two to three seconds. So a
// successful "add" proves more than absence: that nobody deleted the key
// since it was read (a counter read more than a second ago is read again
// before it is written from).
//
// Reserve reads the counters and the blocks in one "gets"; when no block
// exists it writes each counter ("cas", or "add") and, in parallel, reads
// the blocks again. This keeps the ordering rule of backend.Reserve even on
// a pool, where the reads of one "gets" on different servers are not
// ordered: the write proves the counter unchanged (not deleted) since the
// first read, and the second block read starts after the first read ended.
// Block sets the block before it deletes the counter; if that delete came
// before the first read, the second read sees the block; if it came after
// the write, the attempt counted on top of the blocking one (and is refused
// as over the limit); in between, the write fails, is retried from a fresh
// read, and the blocks are read a third time. When a block is seen after
// counting, the counters are refunded (a refund never recreates a counter
// that is gone). On a single server that Open connected, the second block
// read is left out: a server reads the keys of one "gets" in order, and the
// counters come first, so the first read already read the blocks after the
// counters.
//
// # Round trips
//
// Measured by TestRoundTrips (a delay on every command; the same on one
// server and on a pool of three, where the per-server commands of one step
// run in parallel):
//
//	operation                                  round trips  commands (1 server)
//	Get (any number of keys)                   1            1 gets (1 per server)
//	Incr, existing or new key(s)               2            1 gets + 1 cas/add per key
//	Reserve (2 blocks, 2 counters), no block   2            1 gets, then 2 cas ‖ 1 gets (blocks)
//	  the same, one server opened by Open      2            1 gets, then 2 cas
//	Reserve, blocked                           1            1 gets
//	SetBlock                                   2            set, then append (index)
//	Delete (any number of keys)                1            1 set (tombstone) per key
//	Block                                      4            gets, cas, set, then append ‖ set (tombstone)
//	Scan (one page)                            2            gets index shards, gets members
//
// A login attempt therefore costs two round trips before the password check
// (one when blocked) and, after it, one on success (deleting the counters)
// or none on failure, plus four when the failure sets a block. One round
// trip before the check would need an atomic server-side
// increment-with-expiry (the meta protocol's "ma" with N and T flags), which
// gomemcache does not speak. A lost race adds a gets+cas per retry. A
// counter that is new, or has slid past the time its index entry covers,
// also costs an index write, made by a background goroutine off the request
// (see below).
//
// # Listing: the index
//
// Memcached cannot enumerate keys, so the Store records the keys it writes
// in index keys, IndexShards per family, named prefix + "\xff" + "b" or "c"
// + shard number (0xff never occurs in an engine key, so they cannot collide
// with one). A key belongs to shard fnv32a(key) mod IndexShards. A shard's
// value lists its members, one "<until-unix-ms> <key>" line each (0 =
// permanent; a member listed twice counts with its latest until).
//
// Recording a member is one "append" to its shard ("add" when the shard
// does not exist yet): atomic on the server, constant network cost whatever the shard's
// size, never retried against other writers. A key is always written
// before its member line is appended. Shards only grow that way; a
// compaction rewrites a shard with gets + cas (retried when an append or
// another compaction came in between, so no member is lost): each member
// once, members whose until has passed pruned. Each process asks its
// background goroutine for a shard's compaction every IndexShardBytes/8
// bytes it appended to it, and compacts at once when the server refuses to
// grow a shard (its item size limit). Index keys do not expire (an append
// cannot extend an expiry); compactions keep them small.
//
//   - Blocks (SetBlock, Block) are recorded synchronously, right after the
//     block's own write: once SetBlock returns, every process's Scan lists
//     the block.
//   - Counters (Incr, Reserve) are recorded by the background goroutine
//     (batched: one append per shard and batch), so the login path never
//     waits for the index. A counter's value remembers until when its index
//     entry covers it ("indexed-until", set one TTL past its expiry), so a
//     counter hit steadily is re-recorded once per TTL, not on every
//     increment. Scan first waits until this Store's queued updates and
//     compactions are written, so a process always lists its own counters;
//     counters written by another process appear once that process's
//     indexer has written them (normally within milliseconds).
//
// Scan reads every shard of both families (one multi-key gets), keeps the
// members with the prefix after the cursor in key order, and reads up to
// limit of them (another gets) to return those that still exist, with
// their value and TTL; the cursor is the last key examined. Deleted keys
// stay in the index until their until passes or a compaction finds them
// gone (Scan skips them).
//
// Limits, all visible in Stats and the log:
//
//   - Size: a compaction keeps a shard within IndexShardBytes (default 512
//     KiB; keep it under the server's item size limit, -I, 1 MiB by
//     default), about 7,000 members of 70 bytes, so about 450,000 blocks
//     and as many counters with the default 64 shards. Over the limit it
//     first drops members that no longer exist, then the newest members:
//     those keys are written and work, only Scan misses them
//     (Stats.IndexOverflow, a warning in the log). Raise IndexShards for
//     bigger floods; every Store sharing a prefix must use the same value.
//   - Cost: an append moves only the new lines over the network, but the
//     server copies the shard into a bigger item: server CPU grows with the
//     shard's size (tens of microseconds per append for shards of a few
//     hundred KiB). The indexer appends once per shard per batch, so under a
//     flood of new identities the copies are shared by many counters; more
//     shards make them smaller. A compaction moves the whole shard twice,
//     once per IndexShardBytes/8 appended bytes per process.
//   - Loss: counter index updates wait in a bounded queue (IndexQueue); a
//     full queue, or a shard server that stays down, drops updates
//     (Stats.IndexDropped, logged); such a counter is missing from Scan
//     until it is next written after its indexed-until time. A process
//     that dies between writing a key and recording it (for counters:
//     before its indexer ran) leaves that key unlisted the same way.
//   - Eviction: an evicted index shard forgets its members until they are
//     written again (see below).
//
// # Eviction
//
// Memcached evicts the least recently used items when it runs out of
// memory. An evicted counter restarts at zero and an evicted block unblocks
// early: both reopen the door they guarded. Give defender a dedicated
// instance (or pool) with enough memory for the keys of a flood (see
// docs/scaling.md); a counter with a 30-byte key takes about 160 bytes of
// the server's memory, its index entry included (measured with the "bytes"
// statistic over 10,000 counters; slab rounding comes on top). The Store
// polls the servers' "stats" every EvictionCheck (default one minute, on
// its own connection and goroutine, never on a request) and logs a warning
// when a server's eviction count grew, or is not zero at the first check;
// Stats.Evictions holds the total. Close stops the goroutine.
//
// # Timeouts and cancellation
//
// gomemcache has no context. Every network operation is bounded by
// client.Timeout (a connect, and each read and write); the Store checks the
// context before a call, between its steps, in its back-off and while
// waiting for a key's lock, and returns at the first failed step. A call
// whose step hangs therefore returns about client.Timeout after that step
// began (up to twice that when a new connection must be dialled); the Store
// itself answers at the context's deadline and leaves that work to end on
// its own. Do not set client.Timeout below the engine's store deadline: on
// a process whose CPU is saturated, a reply that has arrived may wait long
// for its reader, and a short socket deadline turns healthy round trips into
// errors (the URL's default, DefaultTimeout, is 1s). Every network error, timeout, refused connection or server error
// wraps backend.ErrUnavailable, and also the context's error when its
// deadline has passed. Set
// client.MaxIdleConns to at least the expected number of concurrent calls
// (gomemcache's default is 2: every call beyond that dials and closes a
// connection). Options.MaxInFlight (default 128) bounds the calls using the
// network at once, so that a burst of logins cannot open more connections
// than Memcached accepts (-c, 1024 by default); more calls wait for a slot
// until their context ends.
//
// # What an error says about the write
//
//   - A context that ended before a counter write ("cas"/"add") was sent:
//     that write is never sent. The Store checks the context right before
//     each one, also in work that goes on after the caller was answered
//     at its deadline, so an abandoned Incr or Reserve never counts
//     afterwards (TestAbandonedCallWritesNothing). An abandoned Block whose
//     lockout count was not yet written writes nothing; once it was, the
//     block, its index entry and the counter's deletion follow, so the
//     block is listed.
//   - A write that was sent and then failed (timeout, dead connection) or
//     was abandoned while on the wire may or may not have been applied:
//     the Store never resends it (a compare-and-swap retry after a lost
//     race re-reads first; writes are not retried after network errors).
//   - A Reserve that fails after counting (a later write failed, or its
//     refund after finding a block could not be written) may leave counts
//     in place; the caller cannot tell, as the backend contract says.
//
// # Server restarts
//
// gomemcache keeps up to MaxIdleConns idle connections per server and
// hands them out without checking them. When a server restarts, every
// pooled connection to it is dead, and each used to fail one request
// before being thrown away: with 64 pooled connections, 64 failed logins
// (about a minute at one login a second). The Store therefore drops every
// idle connection of the client (its Close, which leaves the client
// usable; in-use connections are not touched, idle ones to the other
// servers of a pool are dialled again when needed) at the first error
// showing that the server closed a connection: end of file, connection
// reset or broken pipe. Timeouts (a slow or unreachable server) and
// refused dials (no pooled connection involved) do not drop the pool. A
// read ("gets") that met such a dead connection is retried once on a fresh
// one, when its context has not ended: a read is safe to repeat. A write
// is not (it may have been applied) and fails. So after a restart the
// first login succeeds (its "gets" is retried, its write finds only fresh
// connections): TestRestartRecovery measures no failed login and the first
// success a few milliseconds after the server is back, with 64 pooled
// connections, also on a pool of three servers one of which restarts.
// Stats.ConnDrops counts the drops; each is logged (at most once a
// minute). With New, this also closes the idle connections of the client
// you passed in.
package memcached
