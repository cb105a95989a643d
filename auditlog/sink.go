package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"github.com/go-defender/defender/internal/urlreg"
)

// Sentinel errors. Errors returned by this package and its sinks wrap one of
// these (test with errors.Is).
var (
	// ErrInvalidURL reports a sink URL that cannot be opened as written:
	// unknown scheme, unknown query parameter, bad value.
	ErrInvalidURL = errors.New("auditlog: invalid sink URL")
	// ErrInvalidConfig reports a bad WriterOptions field; the message names
	// the field.
	ErrInvalidConfig = errors.New("auditlog: invalid configuration")
	// ErrClosed is returned by a Sink or Writer used after Close.
	ErrClosed = errors.New("auditlog: closed")
	// ErrUnavailable reports that the sink could not be reached or failed
	// transiently; the Writer spools and retries.
	ErrUnavailable = errors.New("auditlog: sink unavailable")
	// ErrSpoolFull reports that the spool reached its size bound and records
	// were refused (counted in Stats.Dropped).
	ErrSpoolFull = errors.New("auditlog: spool full")
	// ErrSpoolLocked reports that another Writer (in this or another
	// process) holds the spool directory.
	ErrSpoolLocked = errors.New("auditlog: spool directory in use")
)

// Filter selects records for Sink.Query. The zero Filter selects every
// record.
type Filter struct {
	// IP, when not empty, selects records whose IP equals it exactly.
	IP string
	// Username, when not empty, selects the records counted under that
	// username: records whose CanonicalUsername equals it, and records
	// without a CanonicalUsername (written before the field existed) whose
	// typed Username equals it. The comparison is exact, byte for byte, as
	// stored (it is data, never a pattern or an operator): the caller
	// passes an already canonical name (defender.Defender.Canonical) to
	// find every spelling counted against it, or the exact typed name to
	// find old records typed that way. See Record.MatchUsername.
	Username string
	// Since, when not zero, selects records with Time >= Since.
	Since time.Time
	// Limit, when > 0, caps the number of records returned (the newest
	// ones). Zero or negative returns every matching record.
	Limit int
}

// Match reports whether r passes the IP, Username and Since conditions of f
// (Limit is not a per-record condition). Sinks that filter in Go use it.
func (f Filter) Match(r Record) bool {
	if f.IP != "" && r.IP != f.IP {
		return false
	}
	if f.Username != "" && !r.MatchUsername(f.Username) {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	return true
}

// MatchUsername reports whether r is counted under name in the sense of
// Filter.Username: r.CanonicalUsername == name, or, when r has no
// CanonicalUsername, r.Username == name.
func (r Record) MatchUsername(name string) bool {
	if r.CanonicalUsername != "" {
		return r.CanonicalUsername == name
	}
	return r.Username == name
}

// Sink stores audit records. Implementations must be safe for concurrent
// use. The conformance package (conformance.RunSink) checks the contract.
type Sink interface {
	// Write stores records. It is idempotent by Record.ID: writing a record
	// whose ID is already stored does not store it again (each sink
	// documents the extent of that guarantee). A nil error means every
	// record is stored; on error, any subset may be stored, and the caller
	// (the Writer) writes the whole batch again later.
	Write(ctx context.Context, records []Record) error
	// Query returns the records matching f, newest first (by Time, then by
	// ID, both descending), at most f.Limit of them when f.Limit > 0, each
	// ID at most once.
	Query(ctx context.Context, f Filter) ([]Record, error)
	// DeleteBefore removes every record with Time strictly before t and
	// returns how many it removed.
	DeleteBefore(ctx context.Context, t time.Time) (int64, error)
	// Close releases the sink's resources. Further calls fail with an error
	// wrapping ErrClosed.
	Close() error
}

// SortNewestFirst sorts records by Time descending, then ID descending: the
// order Sink.Query returns.
func SortNewestFirst(rs []Record) {
	sort.Slice(rs, func(i, j int) bool { return newer(rs[i], rs[j]) })
}

// newer reports whether a sorts before b in newest-first order.
func newer(a, b Record) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID > b.ID
}

// Opener opens a Sink from a parsed URL whose scheme it registered for. It
// must reject query parameters it does not know (see Params) and must not
// put the URL's password in any error (use Errorf or Redact).
type Opener func(ctx context.Context, u *url.URL) (Sink, error)

var registry = urlreg.New[Sink]("auditlog", ErrInvalidURL)

// Register makes a sink available under scheme to Open. Sink packages call
// it from an init function, so importing one (for its side effect if need
// be) is enough. Register panics if scheme is registered twice or open is
// nil.
func Register(scheme string, open Opener) { registry.Register(scheme, open) }

// Schemes returns the registered schemes, sorted.
func Schemes() []string { return registry.Schemes() }

// Open opens the sink that rawURL names, for example
// "file:///var/log/defender/attempts.jsonl" or
// "mongodb://localhost:27017/defender?collection=access_attempts". An unknown
// scheme is an ErrInvalidURL error listing the known ones. Errors never
// contain the URL's password.
func Open(ctx context.Context, rawURL string) (Sink, error) { return registry.Open(ctx, rawURL) }

// Redact returns rawURL with any password replaced by "xxxxx". A string that
// does not parse as a URL, or whose password the parser may have missed, is
// reduced to its scheme.
func Redact(rawURL string) string { return urlreg.Redact(rawURL) }

// Errorf returns an ErrInvalidURL error about u (redacted) with the reason
// given by format and args.
func Errorf(u *url.URL, format string, args ...any) error {
	return urlreg.Errorf(ErrInvalidURL, u, format, args...)
}

// Params helps an Opener consume query parameters: each Get removes the
// name, and Done reports any left over as an ErrInvalidURL error.
type Params = urlreg.Params

// NewParams returns the query parameters of u.
func NewParams(u *url.URL) *Params { return urlreg.NewParams(u, ErrInvalidURL) }

// Cleanup deletes the records of sink older than olderThan (relative to
// now) and prints one line saying how many to out (which may be nil). It is
// the body of `defender cleanup`, django-defender's cleanup_django_defender:
// no prompt, and the error tells the caller what exit status to use.
func Cleanup(ctx context.Context, sink Sink, olderThan time.Duration, out io.Writer) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("%w: cleanup age %v must be positive (DEFENDER_ACCESS_ATTEMPT_EXPIRATION)", ErrInvalidConfig, olderThan)
	}
	cutoff := time.Now().Add(-olderThan).UTC()
	n, err := sink.DeleteBefore(ctx, cutoff)
	if err != nil {
		return n, fmt.Errorf("auditlog: cleanup: %w", err)
	}
	if out != nil {
		fmt.Fprintf(out, "deleted %d access attempt(s) older than %s (before %s)\n", n, olderThan, cutoff.Format(time.RFC3339))
	}
	return n, nil
}
