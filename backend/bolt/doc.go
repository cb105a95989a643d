// Package bolt is defender's embedded, persistent store for a single node:
// counters and blocks with expiry in one bbolt (go.etcd.io/bbolt) file.
//
// Open it with Open, or with backend.Open(ctx, "bolt:///var/lib/defender.db").
// It implements backend.Backend and the optional backend.Reserver and
// backend.Blocker.
//
// # URLs
//
// Everything after "bolt://" is the file path: "bolt:///var/lib/defender.db"
// is absolute (three slashes), "bolt://defender.db" and
// "bolt://data/defender.db" are relative to the working directory, as is
// the opaque form "bolt:defender.db". Query parameters: timeout=1s
// (Options.Timeout), nosync=true (Options.NoSync), sweep_interval=1m,
// max_batch_delay=0s and max_batch_size=1000; any other is an error. The
// file is created with mode 0600; its directory must exist.
//
// # Storage
//
// Every key lives in one bucket, "defender". Its value holds the expiry
// (8 bytes, big-endian unix nanoseconds of the store clock, 0 = never),
// a kind byte ('c' counter, 'b' block) and the counter (8 bytes) or the
// block's value, so a key and its expiry are always written together. An
// expired key is invisible to every method at once; a background sweeper
// deletes expired keys every Options.SweepInterval, in transactions of at
// most 1000 keys found by read-only scans. Measured: a file of 16 MiB for
// 10^5 counters with 27-byte keys, about 168 bytes of file per key (121
// bytes in use in B+tree pages; bbolt grows the file in steps and never
// shrinks it: deleted pages are reused).
//
// # Reads never take the write lock
//
// Get, Scan and the block check of Reserve run in read-only transactions
// (bbolt's View), which run concurrently with each other and with the one
// writer. A blocked login therefore never waits for a write: Reserve reads
// the blocks first and returns there when one exists. Otherwise it counts
// the attempt in a write transaction that reads the blocks again and
// increments the counters together, atomically (the ordering rule of
// backend.Reserve).
//
// # Writes are group-committed
//
// Incr, SetBlock, Delete, Block, the counting half of Reserve and the
// sweeper's deletions are queued to one committer goroutine, which commits
// everything queued in one transaction and one fsync as soon as the
// previous commit is done. A lone failure costs one commit (one fsync); a
// flood shares each fsync among all the writes that arrived during the
// previous one, so it is not fsync-bound per attempt. This replaces
// bbolt's DB.Batch, which waits a fixed MaxBatchDelay (10ms) before every
// batch. Measured in one run on the same loaded machine (2 cores, load
// about 10), fsync on, failures per second (BenchmarkFlood):
//
//	concurrent failures   DB.Batch       group commit
//	16                    1,100-1,300    3,400-13,000
//	64                    3,800-5,300    9,300-12,800
//	256                   17,000-20,000  30,000-33,000
//	lone failure latency  12.5-13.4 ms   1.1-2.2 ms
//
// As with DB.Batch, a write that fails (for example Incr on a key that
// holds a block) is taken out and the others are committed without it.
//
// # Cancellation: an error means nothing was written
//
// Every write is decided one way or the other, never left in doubt. The
// context is checked when a call starts; then its write waits in the
// queue, where either the committer takes it into the next transaction
// or the caller, when its context ends first, abandons it (one
// compare-and-swap decides which). An abandoned write never runs, not even
// at Close, and the call returns the context's error ("not written"). A
// caller whose write was already taken waits for that transaction's commit
// (one fsync, a few milliseconds) and returns its outcome, success
// included, although its context has ended meanwhile. So for Incr,
// SetBlock, Delete, Reserve and Block: an error always means nothing of
// the call was written (Block and Reserve write in one transaction), and
// success means committed. TestCancellationIsExact races hundreds of calls
// cancelled at random points: the counter always ends at exactly the
// number of successful calls. A call may thus return up to one commit
// after its deadline; a disk that hangs in fsync holds the callers of that
// one batch (at most MaxBatchSize), while later callers are answered at
// their deadline.
//
// # Durability and locking
//
// With fsync on (the default; Options.NoSync turns it off), a write is
// acknowledged only after its transaction is on disk. bbolt's copy-on-write
// pages and double meta page make a commit atomic: after kill -9, or a
// crash, the file opens cleanly with every acknowledged write and no
// partial one (tested by killing a child process in a write flood). NoSync
// keeps that guarantee against a process crash but not against an
// operating-system crash or power loss.
//
// One file is held by one Store: Open takes an exclusive flock, which also
// excludes a second Open in the same process. When another holder has it,
// Open fails after Options.Timeout (default 1s) with an error wrapping
// ErrLocked that names the file, instead of hanging.
package bolt
