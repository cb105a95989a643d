// Package sqlite is a worked example of a third-party defender backend: a
// backend.Backend on SQLite through database/sql (the pure-Go driver
// modernc.org/sqlite), registered under the URL scheme "sqlite". It lives
// in its own module, as yours would, and its tests run the conformance
// suite (conformance.Run and conformance.RunHarness) and the login-path
// benchmark (conformance.Bench), as yours should:
//
//	go test ./...                        # the conformance suite
//	go test -run '^$' -bench . -benchmem # the benchmark, with x-floor
//
// It shows the pitfalls a SQL store meets (see docs/writing-a-backend.md):
//
//   - One writer. SQLite allows one writer at a time; concurrent writers
//     on several connections get SQLITE_BUSY ("database is locked"), at
//     once for a transaction that reads before it writes. Store uses one
//     connection, so the calls of a process queue for it.
//   - Scan without LIKE or GLOB. Both give meaning to characters that keys
//     hold (% _ * ? [), and LIKE ignores ASCII case: Scan selects a range
//     of the primary key instead.
//   - Keyset cursors, not OFFSET. A delete between two pages shifts every
//     later row, and OFFSET would skip keys that were never deleted: the
//     cursor is the last key returned.
//   - A value and its expiry in one statement: Incr is one upsert per key
//     (inside one transaction per call) that also restarts the TTL.
//
// Expired rows stay in the table until they are rewritten or deleted;
// every read filters them out. A production backend would also delete
// them now and then (DELETE FROM kv WHERE exp != 0 AND exp <= now).
package sqlite
