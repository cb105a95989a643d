// Package redis is defender's storage backend on Redis: a standalone server,
// a Sentinel-managed master, or a Redis Cluster, through
// github.com/redis/go-redis/v9. Import it under another name to avoid the
// clash with go-redis:
//
//	import defenderredis "github.com/go-defender/defender/backend/redis"
//
// # Opening a store
//
// New wraps the application's existing go-redis client (the equivalent of
// django-defender's DEFENDER_REDIS_NAME); the store does not own it and
// Close leaves it open. Open, or backend.Open once this package is imported,
// creates a client from a URL; that store owns its client and Close closes
// it:
//
//	redis://[[user]:password@]host[:port][/db][?params]
//	rediss://...                                   TLS
//	redis+cluster://[[user]:password@]h1:p1,h2:p2,h3:p3[?params]
//	rediss+cluster://...                           TLS
//	redis+sentinel://[[user]:password@]s1:p1,s2:p2/master[/db][?params]
//	redis+sentinel://master[:password]@s1:p1,s2:p2[/db]   (shorthand)
//	rediss+sentinel://...                          TLS to the data nodes
//
// A DEFENDER_REDIS_URL of django-defender works unchanged: user names (Redis
// 6 ACL users) and passwords are percent-decoded, so a password holding "@",
// ":", "/" or "%" is written percent-encoded. Parameters: prefix (see
// Options.Prefix), sentinel_username and sentinel_password (the sentinels'
// own credentials), master (the sentinel master name, instead of the path),
// and go-redis's own options such as dial_timeout=100ms, read_timeout,
// write_timeout, pool_size, max_retries, client_name and, for TLS,
// skip_verify. Any other parameter is an error, and no error shows the
// password.
//
// # Round trips per operation
//
// Every write that the login path makes is a Lua script sent with EVALSHA
// (loaded once per server with EVAL when the server answers NOSCRIPT):
//
//	Reserve (the login check)  1 EVALSHA: return the first block that exists,
//	                           else INCR each counter and PEXPIRE it
//	Incr                       1 EVALSHA: INCRBY + PEXPIRE (PERSIST for ttl 0)
//	                           per key, in the same script: a counter never
//	                           exists without its TTL
//	Block                      1 EVALSHA: INCR + PEXPIRE the lockout count,
//	                           SET the block PX the duration it selects (plain
//	                           SET when permanent), DEL the counter
//	Get                        1 EVALSHA (read only): GET + PTTL per key
//	SetBlock                   1 SET key value PX ms (or SET)
//	Delete                     1 DEL
//	Scan (a page)              SCAN MATCH <escaped prefix>* COUNT n, then Get
//	Notify                     1 PUBLISH (on a Ring, one per shard, in parallel)
//
// So a login is one round trip before the password check (Reserve) and at
// most one after (the refund Incr on success, Block on the failure that
// crosses the limit). A test counts this with INFO commandstats.
//
// On a cluster a script may only touch keys of one hash slot. The engine's
// keys carry their identity as a hash tag (defender:f:{i:192.0.2.1},
// defender:b:{u:alice}), so all keys of one identity are in one slot. The
// store groups the keys of a call by slot (CRC16 of the hash tag, as Slot
// computes) and sends one script per slot in one pipeline: go-redis sends
// each node's part in parallel, so a call still costs one round trip of
// latency. Two cases cost more, and only on a cluster:
//
//   - Reserve where one slot found a block while another slot counted: a
//     second round trip refunds those increments (DECRBY, deleting a
//     counter that falls to 0; the TTL restart cannot be undone).
//   - Keys that do not pair up by slot (Blocks[i] and Counters[i] in
//     different slots, or a BlockRequest's keys in several slots): the
//     store falls back to the ordered sequences of backend.Reserve and
//     backend.Block (increment, read, refund; Incr, SetBlock, Delete).
//
// A Ring is grouped by hash tag instead of slot. go-redis's failover
// cluster client (what NewUniversalClient returns for a Sentinel master name
// with RouteByLatency or RouteRandomly) works too; writes go to the master.
//
// # Key layout and prefixes
//
// Options.Prefix (or ?prefix=) is prepended to every stored key and removed
// from every key Scan returns. Slots are computed on the whole stored key,
// so any prefix is correct; a prefix holding a hash tag such as "{d}:" puts
// every key in one slot (one shard). Scan escapes the glob characters
// * ? [ ] and \ of the prefix, so they match literally, and never uses KEYS.
// On a cluster Scan walks every master in turn; its cursor names the master
// by the lowest slot it serves (so a scan continues on the replica promoted
// in its place) together with the SCAN cursor, and a SCAN batch larger than
// the page is resumed after the last key returned.
//
// Memory: on Redis 7.0 a failure counter with its TTL costs about 140 bytes
// (MEMORY USAGE 72) and a block with its TTL about 180 bytes, for the
// engine's keys of about 25 bytes (TestMemoryPerKey measures it over 20,000
// identities); an identity that was locked out also has its lockout count.
//
// # Change notifications (backend.Notifier)
//
// A process that keeps blocks in a cache in front of the store (defender's
// block cache) must drop its copy when another process removes the block.
// The store carries these announcements on Redis pub/sub: Notify publishes
// the keys, in one message separated by spaces (keys never hold one), and
// each Subscribe holds a subscription to the store's channel (Channel):
//
//	<prefix>defender:notify:<db>
//
// Pub/sub channels are global to a server, across its databases, so the
// channel names the prefix and the database: stores of another prefix or
// database on the same server never hear each other.
//
// Announcements arrive in order, typically within a millisecond (a test
// measures 200 announcements between two clients: p99 a few milliseconds
// under the race detector). Pub/sub keeps nothing for a
// subscriber that is not connected, so every interruption is reported
// instead: a subscription calls onReset when it is established, and again
// each time it is re-established after a lost connection, a server restart
// or a failover; a subscriber then drops everything it cached. A connection
// that stops answering without closing (a frozen server, a cut link) is
// found by a PING after 3 seconds without traffic and replaced after 3 more.
// While the subscription is down (between the break and the onReset), the
// age of a cached entry is bounded by the cache itself: defender's
// DEFENDER_BLOCK_CACHE_TTL.
//
// Each subscription has one goroutine and one connection, which go-redis
// dials apart from the command pool: subscriptions never take a connection
// from the logins. Close ends every subscription of the store (each calls
// onReset one last time) and waits for them; stop ends one without calling
// onReset.
//
// On a cluster, the subscription goes to the master of the channel's hash
// slot, and Notify sends PUBLISH there too (go-redis would send it to a
// random node), so that announcements keep their order; the cluster bus
// forwards every PUBLISH to all nodes, so a message published on any node
// arrives. After a failover the subscription asks the client to reload the
// slot map and subscribes on the promoted master. Plain PUBLISH rather than
// sharded SPUBLISH: SPUBLISH needs Redis 7 and a subscriber that follows its
// slot's moves, to save cluster-bus traffic that unblocks (rare, manual
// events) never make. On a Ring, whose shards do not forward messages,
// Notify publishes on every live shard, so a subscriber hears it whichever
// shard it is connected to. With Sentinel, the subscription follows the
// master.
//
// A server that refuses the subscription (an ACL without the channel:
// NOPERM) is up while announcements are missed: the subscription then calls
// onReset after every refused attempt (backing off from 10ms to 1s) until
// the server accepts. A message on the channel that is not a list of valid
// keys makes it call onReset rather than onKey.
//
// # Retries: no blind resend of a write
//
// go-redis retries a command after a network error or timeout (standalone
// and Sentinel clients up to MaxRetries, 3 by default; the cluster client on
// another attempt). For INCR that would count one failure twice when only
// the reply was lost. The store therefore adds a one-shot guard argument to
// every non-idempotent script: go-redis serialises it each time it writes
// the command, and the second time it fails the write, unless the previous
// attempt's reply proves the script did not run (MOVED, ASK, TRYAGAIN,
// LOADING, READONLY, CLUSTERDOWN, MASTERDOWN, NOSCRIPT), so cluster
// redirections still work. This holds for any client, whatever its
// MaxRetries, without changing its options; the call then fails with
// ErrUnavailable and the engine's fail mode applies. Idempotent commands
// (GET, SET, DEL, the read script) may be retried by the client.
//
// Clients created from a URL also have MaxRetries -1 (unless max_retries is
// given), a single dial attempt per connection, and ContextTimeoutEnabled,
// so that a dead server fails fast and the context's deadline (defender's
// DEFENDER_STORE_TIMEOUT) bounds every call. A client given to New should
// have ContextTimeoutEnabled set too; otherwise a hung server is bounded by
// its ReadTimeout (3s by default) instead of the context.
//
// # Errors
//
// Network errors, timeouts, a closed connection pool, a lost reply, and the
// server replies READONLY, LOADING, CLUSTERDOWN, MASTERDOWN, TRYAGAIN,
// MOVED, ASK, NOREPLICAS, BUSY, OOM and "max number of clients" are wrapped
// in backend.ErrUnavailable (with %w, next to the original error): the
// engine applies its fail mode, never a 500. A deadline is ErrUnavailable
// and context.DeadlineExceeded; a cancellation is context.Canceled only.
// Other server replies (a script error, WRONGTYPE) are returned wrapped as
// they are. After Close every method returns backend.ErrClosed.
//
// # Failover and the loss window
//
// Redis replicates asynchronously: a master acknowledges an increment before
// its replica has it. When a master crashes and Sentinel or the cluster
// promotes its replica, the increments acknowledged in the last moments
// before the crash (the replication lag, typically well under a millisecond
// on a LAN, more under load or a slow link) can be lost, so an attacker can
// gain that many extra attempts, once per failover. A coordinated failover
// (CLUSTER FAILOVER, SENTINEL FAILOVER) waits for the replica and loses
// nothing. WAIT 1 <timeout> after each write would close the window at the
// cost of a second round trip on the hot path; the store does not use it.
// During the failover itself (about 2 seconds in the tests: 1s down-after or
// node timeout plus the election) calls fail with ErrUnavailable within
// their deadline, and counting resumes on the promoted replica; the tests
// measure this under a flood of reservations and log the loss they observe.
package redis
