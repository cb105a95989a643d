// Package mongo is the MongoDB audit sink (go.mongodb.org/mongo-driver/v2),
// registered as the "mongodb" and "mongodb+srv" URL schemes:
//
//	mongodb://user:password@host:27017/defender?collection=access_attempts&ttl=24h
//
// The path names the database (default "defender"). Parameters of our own:
// collection (default "access_attempts"), ttl (ask for a TTL index on time,
// e.g. 24h) and timeout (the deadline of each operation, default 5s). Every
// other parameter must be a connection-string option the driver knows
// (authSource, replicaSet, tls, serverSelectionTimeoutMS...); an unknown
// one is an auditlog.ErrInvalidURL error. Errors never show the password.
//
// # Documents and indexes
//
// Each record is one document whose _id is the record's ID, so writing a
// record twice is a duplicate-key error, which Write ignores: replays are
// idempotent whatever the time between them. Write uses an unordered
// InsertMany, so one duplicate does not stop the rest of a batch. Times are
// BSON dates: millisecond precision. The optional fields
// (canonical_username, count, until, fail_mode) are absent when empty, so
// a plain record's document is as small as before they existed, and older
// documents read back as records without them. Indexes:
// (canonical_username, time), (username, time), (ip, time), and time,
// created one at a time by the first operation that reaches the
// server (creating an index that exists is a no-op). An index the server
// refuses is logged and skipped: indexes only make queries fast, and
// idempotence rests on _id.
//
// With ttl set, the time index is a TTL index and the server deletes old
// records itself. A server that refuses TTL indexes (FerretDB v1 answers
// NotImplemented) gets a plain time index and a warning in the log; run
// `defender cleanup` (DeleteBefore) from cron there. TTLActive says which.
//
// # Timeouts
//
// The driver's 30-second server selection timeout is replaced by 2 s
// (unless the URL sets serverSelectionTimeoutMS), connections time out
// after 2 s, and every operation has a deadline (Options.Timeout). The
// auditlog.Writer calls the sink from its own goroutine anyway: a slow or
// dead server never reaches a login.
//
// # Injection
//
// Filters are built as bson.D documents with constant field names and the
// Filter's strings as values under $eq, so a username such as
// {"$ne": null} or "$where" is a string compared for equality, never an
// operator or a document. Filter.Username becomes
// {$or: [{canonical_username: {$eq: u}}, {canonical_username: {$exists:
// false}, username: {$eq: u}}]}: the canonical name, or the typed one for
// documents written before canonical names were stored; each branch has
// its index.
package mongo
