// Package backend defines the storage contract of defender and the registry
// that opens a store from a URL.
//
// A Backend stores two kinds of values, each under a key with its own time to
// live: integer counters (Incr, with a sliding TTL) and opaque block values
// (SetBlock). It can read keys (Get), delete them (Delete) and list them by
// prefix one page at a time (Scan). That is all a store must do; every login
// policy (limits, key building, escalation, fail modes) lives in the
// defender package, once.
//
// Optional interfaces let a store do more per round trip without changing the
// contract: Reserver checks blocks and counts an attempt at once, Blocker
// escalates and sets a block at once. The package functions Reserve and Block
// use them when present and fall back to the core methods otherwise, with the
// same semantics. A conditional block (BlockRequest.IfAbsent) changes nothing
// when a block is already there, so that attempts racing past a limit
// escalate once.
//
// Two optional interfaces describe a store to the engine: Immediate (calls
// never wait for I/O: no per-call deadline) and KeyBorrower (the store never
// keeps a caller's key string: the engine may lend keys built in a reused
// buffer).
//
// Notifier is an optional interface of another kind: a store shared by
// several processes announces changed keys (an unblock) to all of them, so
// that a cache of blocks in front of the store drops its copy at once.
//
// Stores are chosen by URL at the edges of a program:
//
//	b, err := backend.Open(ctx, "bolt:///var/lib/defender/defender.db")
//
// Each backend package registers its scheme in an init function; import it
// (for example with a blank import) to make the scheme known. Unknown schemes
// and unknown query parameters are errors, and every error prints the URL
// with its password redacted.
//
// The conformance package holds the executable specification of Backend:
// call conformance.Run from your backend's tests.
package backend
