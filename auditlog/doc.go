// Package auditlog records login attempts ("access attempts", as
// django-defender calls them) for the admin's "recent attempts" and for
// forensics, without ever slowing a login down or losing a record.
//
// # Records
//
// A Record is one classified attempt: time, client IP, username as typed
// (trimmed, at most 255 bytes) and the canonical username the engine
// counts it under, user agent (255), path (255), HTTP Accept (1025),
// success, whether it was locked, the fail mode that decided it when the
// store was down, and a unique ID (NewID: time-ordered, random; the Writer
// assigns it when the caller leaves it empty). It never holds a password.
// A coalesced record (see Coalescer) also carries Count, the number of
// attempts it stands for, and Until, the time of the last one;
// Record.Attempts reads the count either way.
//
// Filter.Username selects the records counted under a name: those whose
// CanonicalUsername equals it, and, for records written before that field
// existed, those whose typed Username equals it. The comparison is exact:
// pass a canonical name (defender.Defender.Canonical) to find every
// spelling counted against it, or a typed name to find old records.
//
// # Coalescing
//
// Under a brute-force flood nearly every request comes from a client that
// is already blocked. A Coalescer in front of the Writer turns the locked
// attempts (Locked && !Success) of one identity (IP, canonical username,
// fail mode) within a window (DEFENDER_AUDIT_COALESCE_WINDOW, typically
// 1 s) into one record with a Count, so such a flood costs one record per
// window instead of one per request. Failures and successes are never
// coalesced nor delayed. The Coalescer bounds its memory (MaxOpen open
// windows; past it the oldest is emitted early) and the records a blocked
// client can cause by rotating usernames, or a blocked username by coming
// from many addresses (MaxFanout; past it, one overflow record per IP
// without the username, or per username without the IP). It never drops a
// record: every locked attempt is counted in exactly one emitted record,
// and Close emits the open windows. Recording a repeat locked attempt does
// not allocate.
//
// # Sinks
//
// A Sink stores records: Write a batch (idempotent by ID), Query the most
// recent ones with simple exact-match filters, DeleteBefore a time (a
// coalesced record goes by its Time, the first attempt). Sinks
// register a URL scheme (Register) and are opened by URL (Open):
//
//	file:///var/log/defender/attempts.jsonl       package auditlog/file
//	mongodb://host:27017/defender?collection=...  package auditlog/mongo
//
// Import a sink package (for its side effect if need be) to make its
// scheme known. conformance.RunSink checks a Sink against the contract.
//
// # The Writer
//
// Writer is the Recorder the engine calls once per attempt. Record puts
// the record in a bounded in-memory queue and returns; one goroutine takes
// batches (up to WriterOptions.BatchSize; as many as are queued, so
// batches grow with the load) and writes them to the sink with a deadline
// (WriteTimeout).
//
// When a write fails, the batch goes to the spool, a directory of
// append-only segment files (one JSON record per line), and the Writer
// retries the sink with exponential backoff (RetryMin to RetryMax). While
// anything is spooled, new batches are appended behind it, so records
// reach the sink in the order they were spooled. Once the sink answers,
// the spool is replayed from the oldest segment; a small position file
// beside each segment says how far it was delivered, and a delivered
// segment is deleted.
//
// When the queue is full (the sink is slow or down and the flusher is
// busy), Record appends the record to the spool itself: one write(2) under
// a mutex, no fsync. It never waits for the sink.
//
// # Guarantees
//
//   - Nothing is dropped silently. A record is dropped only when the spool
//     is full (SpoolMaxBytes; policy: refuse the new records, keep the
//     older ones), when the spool directory fails, or when Record is called
//     after Close. Every drop is counted (Stats.Dropped) and logged at error
//     level (at most one line per second, with the running total).
//   - Nothing is duplicated. A replay may send again a batch the sink had
//     already taken (the process died between the sink's answer and the
//     position update, or the sink stored a batch but reported a failure);
//     sinks are idempotent by ID: MongoDB by a unique _id, the file sink by
//     a bounded window of recent IDs seeded from the end of the file (see
//     auditlog/file).
//   - Durability: a batch spooled by the flusher is fsynced (one fsync per
//     batch). A record spooled by Record's overflow path is written but not
//     fsynced: it survives a crash of the process (it is in the kernel's
//     page cache), and is fsynced when its segment is sealed. Records still
//     in the in-memory queue when the process is killed (SIGKILL, OOM) are
//     lost: at most QueueSize records. Close delivers or persists them.
//   - Close(ctx) stops accepting records, delivers the queue and the spool
//     while ctx lasts and the sink answers, then persists what is left to
//     the spool. The next Writer on the same SpoolDir replays it at start.
//     One Writer at a time may use a spool directory (flock; ErrSpoolLocked).
//
// Stats reports the queue and spool levels and the counters (delivered,
// spooled, overflowed, dropped, sink errors, corrupt spool lines).
//
// # Cleanup
//
// Cleanup removes records older than an age (DEFENDER_ACCESS_ATTEMPT_EXPIRATION)
// and prints how many: the body of `defender cleanup`, the equivalent of
// django-defender's cleanup_django_defender, meant for cron.
package auditlog
