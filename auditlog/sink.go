package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
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
	// Username, when not empty, selects records whose Username equals it
	// exactly (byte for byte, as stored; it is data, never a pattern or an
	// operator).
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
	if f.Username != "" && r.Username != f.Username {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	return true
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

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a sink available under scheme to Open. Sink packages call
// it from an init function, so importing one (for its side effect if need
// be) is enough. Register panics if scheme is registered twice or open is
// nil.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	scheme = strings.ToLower(scheme)
	if open == nil {
		panic("auditlog: Register opener is nil for " + scheme)
	}
	if _, dup := registry[scheme]; dup {
		panic("auditlog: Register called twice for " + scheme)
	}
	registry[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open opens the sink that rawURL names, for example
// "file:///var/log/defender/attempts.jsonl" or
// "mongodb://localhost:27017/defender?collection=access_attempts". An unknown
// scheme is an ErrInvalidURL error listing the known ones. Errors never
// contain the URL's password.
func Open(ctx context.Context, rawURL string) (Sink, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		reason := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			reason = ue.Err.Error()
		}
		return nil, fmt.Errorf("%w %q: %s", ErrInvalidURL, Redact(rawURL), reason)
	}
	scheme := strings.ToLower(u.Scheme)
	registryMu.RLock()
	open, ok := registry[scheme]
	registryMu.RUnlock()
	if !ok {
		if scheme == "" {
			return nil, fmt.Errorf("%w %q: no scheme (known: %s)", ErrInvalidURL, Redact(rawURL), strings.Join(Schemes(), ", "))
		}
		return nil, fmt.Errorf("%w %q: unknown scheme %q (known: %s)", ErrInvalidURL, Redact(rawURL), scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}

// Redact returns rawURL with any password replaced by "xxxxx". A string that
// does not parse as a URL is reduced to its scheme.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		if i := strings.Index(rawURL, "://"); i > 0 {
			return rawURL[:i] + "://(unparsable)"
		}
		return "(unparsable)"
	}
	return u.Redacted()
}

// Errorf returns an ErrInvalidURL error about u (redacted) with the reason
// given by format and args.
func Errorf(u *url.URL, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidURL, u.Redacted(), fmt.Sprintf(format, args...))
}

// Params helps an Opener consume query parameters: each Get removes the
// name, and Done reports any left over as an ErrInvalidURL error.
type Params struct {
	u    *url.URL
	vals url.Values
}

// NewParams returns the query parameters of u.
func NewParams(u *url.URL) *Params { return &Params{u: u, vals: u.Query()} }

// Get returns the last value of name and whether it was present, and marks
// name as consumed.
func (p *Params) Get(name string) (string, bool) {
	v, ok := p.vals[name]
	delete(p.vals, name)
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// Done returns an ErrInvalidURL error naming the parameters nobody consumed,
// or nil.
func (p *Params) Done() error {
	if len(p.vals) == 0 {
		return nil
	}
	names := make([]string, 0, len(p.vals))
	for n := range p.vals {
		names = append(names, n)
	}
	sort.Strings(names)
	return Errorf(p.u, "unknown query parameter(s) %s", strings.Join(names, ", "))
}

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
