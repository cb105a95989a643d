// Package file is the JSON-lines audit sink: one record per line,
// appended to a file, registered as the "file" URL scheme:
//
//	file:///var/log/defender/attempts.jsonl
//	file:///var/log/defender/attempts.jsonl?sync=true&dedupe=16384
//	file:relative/path.jsonl
//
// Parameters: sync (fsync after every write; default false: a record
// survives a crash of the process, not of the machine, until the kernel
// writes it back) and dedupe (the size of the window of remembered IDs,
// default 16384, about 2 MB; the Writer replays at most a batch or two,
// right after writing them). Any other parameter is an error.
//
// # Format
//
// Each line is a JSON object written by encoding/json (fields as in
// auditlog.Record's JSON tags; canonical_username, fail_mode, count and
// until only when set, so a plain record's line is what it was before
// those fields existed, and older lines read back as records without
// them). Query compares Filter.Username with canonical_username, or with
// username on lines without one, while it scans. Every string is escaped: a username holding
// a newline and a forged record stays one string field of one line;
// control characters, U+2028/U+2029 and <, >, & are escaped too, so a log
// viewer never interprets them.
//
// # Concurrency and rotation
//
// A Sink serialises its own writes with a mutex and writes each batch with
// a single write(2) on a file opened with O_APPEND, so several processes
// may append to one file without interleaving records. Before each write
// it compares os.Stat of the path with the open file: when logrotate (or
// anyone) renamed or removed the file, it reopens the path, creating a new
// file. Records written between the rename and the check land in the
// renamed file: every record is in exactly one of the files. Query reads
// the file and the previous generation, path + ".1" (logrotate's name).
//
// DeleteBefore rewrites the file (and path + ".1") without the old
// records: kept lines are copied to a temporary file in the same
// directory, which is fsynced and renamed over the original. It holds an
// exclusive flock on the original meanwhile, and writers take a shared
// flock around each write and recheck the path afterwards, so a writer in
// another process never appends to a file that is being replaced.
//
// # Idempotence
//
// Write skips a record whose ID is among the last DedupeWindow IDs this
// Sink wrote, or found in the last 16 MiB of the file when it was opened.
// The auditlog.Writer replays at most the batches it could not confirm
// (typically one), right after they were written, so this window covers
// its replays, across restarts too. Two independent processes replaying
// the same record (which the Writer never does: a spool belongs to one
// process) could store it twice; Query returns each ID once regardless.
//
// A line that does not decode (a write torn by a crash) is skipped by
// readers and kept by DeleteBefore; the sink starts its next write on a
// new line.
package file
