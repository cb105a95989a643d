// Package conformance holds the exported test suites of defender's storage
// contracts. Run (and RunHarness) is the executable specification of
// backend.Backend: a backend is correct when it passes it, and every backend
// in this repository calls it from its own tests. Third parties call it the
// same way for theirs:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) backend.Backend {
//			b, err := mystore.New(...) // empty, or under a fresh namespace
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		})
//	}
//
// # The factory
//
// The suite calls the factory once per subtest and needs a backend that
// looks empty: no key written through an earlier backend may be visible
// (flush the store, or give each call its own namespace). The suite closes
// the backend when the subtest ends (t.Cleanup) and reports an error from
// that Close; the factory must not close it itself. The factory may call
// t.Fatal when the store cannot be reached.
//
// # Time
//
// Run uses real time: the TTL checks write keys with TTLs of one to three
// seconds and sleep, about half a minute in total. The timings suit a store
// whose TTLs have a resolution of one second and are rounded up (Memcached):
// a key written with TTL ttl must be readable for at least ttl and gone
// ttl+1.2s after its last write, and a reported TTL may exceed the exact
// remaining time by up to one second (never more) or fall short of it by up
// to 700ms (latency).
//
// RunHarness takes a Harness instead: its Advance moves a fake clock shared
// by the backends Open returns (the memory and bolt backends take one as
// Options.Now), so that the same checks run instantly; its Now is given to
// the engine in the whole-stack scenario. Clock is a ready fake clock for
// it (NewClock, Clock.Now, Clock.Advance). Run is RunHarness with Advance =
// time.Sleep.
//
// # Failure messages
//
// A failure says which rule broke and, where a likely cause is known, the
// cause: a reported TTL above the one written asks whether the TTL was
// extended; one below it, whether the write failed to restart it or the
// store truncates TTLs (they must be rounded up, never down); a TTL of 0
// for a live expiring key, that TTLs are rounded up and must stay > 0. A
// check that fails the same way many times (say, 64 goroutines that all
// get SQLITE_BUSY) prints the first three messages and then one line with
// the number of the others and the last of them.
//
// # Benchmarks
//
// Bench measures the login path (Check, Failure, Success and the whole
// Attempt, serially and in parallel) through a defender.Defender over your
// backend, optionally paired with your store's own cheapest round trip
// (Floor) for the ratio x-floor; BenchPaired and BenchFloor are its parts.
// This repository's bench/ runs the same functions on every built-in
// backend, so your numbers compare with the published ones.
//
// # The rules
//
// Every rule is a subtest, so that a failure names the rule that broke:
//
//   - Incr/...: an absent counter starts at 0 (AbsentStartsAtZero); delta may
//     be negative and counters go below zero (NegativeDelta); one value per
//     key, in order, several keys per call (SeveralKeysInOrder); Get shows a
//     counter as decimal ASCII (ValueIsDecimal); no keys, no values
//     (NoKeys); SetBlock replaces a counter (SetBlockReplacesCounter); Incr
//     on a key that holds a live block fails, preferably with
//     backend.ErrInvalid, and leaves the block, its value and its TTL as
//     they were (IncrOnBlock).
//   - TTL/...: no key is ever left without its TTL: after Incr or SetBlock
//     with ttl > 0, Get reports 0 < TTL <= ttl (IncrSetsTTL,
//     SetBlockSetsTTL); each Incr restarts the TTL, so increments spaced by
//     less than the TTL keep a counter alive past its first TTL, and it is
//     gone a TTL after the last one (Sliding); a re-block restarts the TTL
//     (Reblock); Get and Scan never extend a TTL (GetNeverExtends).
//     TTL/Expiry writes keys with a short TTL, with TTL 0, and rewrites keys
//     from one to the other, lets the TTL pass once and checks: expired keys
//     are absent for Get (GetExpired) and Scan (ScanSkipsExpired), an
//     expired counter restarts at 0 (ExpiredCounterRestarts), an expired
//     block does not block (ExpiredBlockDoesNotBlock), TTL 0 never expires
//     and reads as TTL 0 (ZeroNeverExpires), rewriting with TTL 0 makes a
//     key persistent and rewriting with a TTL makes it expire
//     (ZeroMakesPersistent, GetExpired), a long TTL is kept (LongTTLKept).
//   - Get/...: absent keys have Found == false and absence is not an error
//     (Absent); block values round-trip byte for byte, binary and empty
//     included (BlockValues); the last SetBlock wins (ReplacesValue); the
//     store copies values in and out (NoAliasing); no keys, no entries
//     (NoKeys).
//   - Keys/...: keys holding : % * ? [ ] { } \ ^ ! -, every printable
//     byte, and keys of backend.MaxKeyLen bytes round-trip through Incr,
//     SetBlock, Get, Scan and Delete and are never confused with each other
//     (RoundTrip); glob characters in a Scan prefix are literal, and keys
//     that differ in one glob character are distinct (GlobPrefixIsLiteral);
//     empty, over-long, space, control-byte, DEL and non-ASCII keys are
//     errors.Is(err, backend.ErrInvalid) for every method (Invalid/...); so
//     is a negative TTL, and nothing is written (NegativeTTL).
//   - Concurrency/...: 64 goroutines x 50 increments of one counter count
//     exactly 3200 (Incr); the same with three keys per call and refunds
//     (IncrSeveralKeys); 100 concurrent backend.Reserve calls on one counter
//     see the counts 1..100, each once (Reserve); reservations racing with
//     backend.Block either see the new block or count on top of the count
//     that caused it, never a fresh counter behind the block: the ordering
//     rule of backend.Reserve (ReserveRacingBlock).
//   - Scan/...: the prefix is a byte prefix ("a:" never returns "ab:1")
//     (Prefix); prefix "" lists every key (EmptyPrefix); with any page size
//     every key is returned at least once and no page exceeds the limit
//     (Pagination/limit=N); entries carry Value and TTL as Get would
//     (ValuesAndTTLs); keys that stay while others are deleted or written
//     during a scan are all returned (DeleteDuringScan, WriteDuringScan); a
//     scan of nothing returns nothing and ends with cursor "" (Empty); a
//     prefix no key can start with (a byte outside 0x21..0x7e, or longer
//     than backend.MaxKeyLen) fails with backend.ErrInvalid, preferably
//     (backend.CheckPrefix), or returns no entry and cursor "", never a key
//     or another error (InvalidPrefix). Every
//     scan must end within 10000 pages and return only live (Found) keys
//     with the prefix.
//   - Delete/...: deleting an absent key is not an error (Absent), nor is
//     deleting no keys (NoKeys); several keys go in one call, blocks and
//     counters alike, and a deleted counter restarts at 0 (Several).
//   - Namespaces/Isolation: keys under "ns1:" are invisible to Scan("ns2:")
//     and deleting them leaves "ns2:" and "ns10:" untouched.
//   - Reserve/... (backend.Reserve, which uses a backend's Reserver when it
//     has one): with no block every counter is incremented with the TTL and
//     Blocked == -1 (NoBlock); with a block, Blocked is its index, Block its
//     entry, and every counter keeps its value (an absent one may be left
//     absent or at 0) (Blocked); counters or blocks alone (CountersOnly,
//     BlocksOnly).
//   - Block/... (backend.Block, which uses a Blocker when there is one): the
//     n-th lockout lasts Durations[n-1], the last entry past the end; the
//     block holds Value with that TTL, the counter is deleted, and the
//     lockouts key counts n with TTL Window (Escalation); a duration of 0 is
//     a permanent block and Window 0 a persistent count (Permanent); a block
//     over an existing one restarts its TTL (RestartsTTL); empty Durations is
//     ErrInvalid (EmptyDurations).
//   - Cancel/Cancelled/<method> and Cancel/DeadlineExceeded/<method>: a call
//     with a context that has ended fails with an error wrapping ctx.Err()
//     or backend.ErrUnavailable, even when an in-process store could have
//     answered at once; afterwards the backend still works (StillUsable).
//   - Closed/...: after Close every method, Reserve and Block included,
//     fails with backend.ErrClosed (AfterClose/<method>); Close while 8
//     goroutines call the backend returns nil, each call in flight either
//     completes normally or fails with backend.ErrClosed (never another
//     error, a panic or a hang), and a call started after Close returned
//     fails with backend.ErrClosed (CloseWhileBusy); Close is idempotent
//     and returns nil again (CloseTwice, CloseUnused).
//   - Defender/...: the whole stack, a defender.Defender with DefaultConfig
//     and FailureLimit 3 over the backend: failures 1..3 are answered
//     normally, attempt 4 is still verified and its failure gets the
//     lockout, attempt 5 is locked without verification, for the username
//     from any IP and the IP with any username (Limit); a success before the
//     limit resets the counters (SuccessResets, SuccessResetsUsername);
//     after the block's TTL the user can try again (Expiry); with
//     LockoutCooloffTimes [1s 2s] the second block lasts 2s (Escalation); of
//     100 simultaneous attempts on one username at most 4 reach
//     verification (Burst).
//
// The suite has teeth: its own tests run it against a correct in-memory
// reference backend, which passes, and against broken variants (a
// non-atomic increment, a TTL not refreshed by Incr, a TTL lost on
// re-block, a scan that drops keys, a Get that ignores expiry, a Reserver
// that reads the blocks before it increments, an Incr that turns a block
// into a counter, TTLs truncated to whole seconds, a plain error instead of
// ErrClosed after Close, and more),
// each of which fails the subtests of the rule it breaks.
//
// RunNotifier checks the optional interface backend.Notifier (change
// announcements between the processes sharing a store) on pairs of backends
// that share a store and a namespace; see its documentation for the rules.
//
// RunSink is the same kind of suite for audit sinks (auditlog.Sink): the
// round trip of every field, coalesced records (Count, Until,
// CanonicalUsername) included; newest-first order; exact-match filters on
// data that looks like query operators; the username filter by canonical
// name, with old records (no canonical name) found by their typed name;
// limits in records, not attempts; deletion by age, a coalesced record by
// its Time; idempotence by ID; concurrent writers. Its teeth include sinks
// that drop Count, Until or the canonical name, that match the typed name
// only, or delete by the end of a coalesced record.
package conformance
