package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the pure-Go driver "sqlite": no cgo

	"github.com/go-defender/defender/backend"
)

func init() {
	backend.Register("sqlite", openURL)
}

// Options configures a Store. A nil *Options means the defaults.
type Options struct {
	// Now is the clock that decides expiry; nil means time.Now. Tests give
	// a fake clock (conformance.Clock) to run the TTL checks instantly.
	Now func() time.Time
	// BusyTimeout is how long SQLite waits for a lock held by another
	// process using the same file before it reports SQLITE_BUSY; 0 means
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
}

// DefaultBusyTimeout is the default Options.BusyTimeout.
const DefaultBusyTimeout = 5 * time.Second

// DefaultScanLimit is the page size of Scan when limit <= 0.
const DefaultScanLimit = 100

// Row kinds.
const (
	kindCounter = 0
	kindBlock   = 1
)

const schema = `CREATE TABLE IF NOT EXISTS kv (
	key  TEXT PRIMARY KEY NOT NULL,
	kind INTEGER NOT NULL,  -- 0: counter (n), 1: block (v)
	n    INTEGER,
	v    BLOB,
	exp  INTEGER NOT NULL   -- expiry in Unix nanoseconds; 0: never
) WITHOUT ROWID`

// Store is a backend.Backend on one SQLite database file.
//
// It uses one connection for everything. SQLite allows one writer at a
// time; with several connections, two concurrent writers get SQLITE_BUSY
// ("database is locked"), and a transaction that reads before it writes
// gets it at once, whatever the busy timeout, when another writes first.
// One connection serialises the calls of this process instead: a call
// waits for the connection (bounded by its context) rather than failing.
type Store struct {
	db  *sql.DB
	now func() time.Time

	// mu is held for reading by every call and for writing by Close, so
	// that Close waits for the calls in flight and later calls see closed.
	mu     sync.RWMutex
	closed bool
}

// Open opens (or creates) the database file at path.
func Open(ctx context.Context, path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if path == "" {
		return nil, fmt.Errorf("%w: sqlite: empty path", backend.ErrInvalid)
	}
	if o.BusyTimeout < 0 {
		return nil, fmt.Errorf("%w: sqlite: negative Options.BusyTimeout %v", backend.ErrInvalid, o.BusyTimeout)
	}
	if o.BusyTimeout == 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(" + strconv.FormatInt(o.BusyTimeout.Milliseconds(), 10) + ")&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: sqlite: %w", backend.ErrUnavailable, err)
	}
	db.SetMaxOpenConns(1) // one writer: see Store
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: sqlite: create table: %w", backend.ErrUnavailable, err)
	}
	return &Store{db: db, now: o.Now}, nil
}

// openURL opens "sqlite:///path/to/file.db?busy_timeout=5s".
func openURL(ctx context.Context, u *url.URL) (backend.Backend, error) {
	if u.Host != "" || u.Path == "" {
		return nil, backend.Errorf(u, "want sqlite:///path/to/file.db")
	}
	p := backend.NewParams(u)
	busy, err := p.Duration("busy_timeout", DefaultBusyTimeout)
	if err != nil {
		return nil, err
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	return Open(ctx, u.Path, &Options{BusyTimeout: busy})
}

// begin starts a call: it fails with ErrClosed after Close and with the
// context's error when ctx has ended. end must follow a nil error.
func (s *Store) begin(ctx context.Context) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return backend.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.mu.RUnlock()
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

func (s *Store) end() { s.mu.RUnlock() }

// wrap maps a database error to the contract: a cancellation stays one;
// anything else (a deadline, SQLITE_BUSY, an I/O error) means the store is
// unavailable, and the engine's fail mode applies.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("sqlite: %s: %w", op, err)
	default:
		return fmt.Errorf("sqlite: %s: %w: %w", op, backend.ErrUnavailable, err)
	}
}

// expiry returns the exp column for ttl written now.
func (s *Store) expiry(now time.Time, ttl time.Duration) int64 {
	if ttl == 0 {
		return 0
	}
	return now.Add(ttl).UnixNano()
}

// errHoldsBlock is returned by the Incr statement's guard.
var errHoldsBlock = errors.New("holds a block")

// Incr implements backend.Backend: all keys in one transaction, each with
// one upsert that restarts the TTL, restarts an expired counter at delta,
// and refuses a live block.
func (s *Store) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.end()
	if err := backend.CheckTTL(ttl); err != nil {
		return nil, err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	now := s.now()
	exp := s.expiry(now, ttl)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for i, k := range keys {
			// The WHERE of DO UPDATE keeps a live block: the statement then
			// returns no row.
			err := tx.QueryRowContext(ctx, `INSERT INTO kv(key, kind, n, v, exp) VALUES (?1, 0, ?2, NULL, ?3)
				ON CONFLICT(key) DO UPDATE SET
					n = CASE WHEN kv.kind = 0 AND (kv.exp = 0 OR kv.exp > ?4) THEN kv.n + ?2 ELSE ?2 END,
					kind = 0, v = NULL, exp = ?3
				WHERE kv.kind = 0 OR (kv.exp != 0 AND kv.exp <= ?4)
				RETURNING n`, k, delta, exp, now.UnixNano()).Scan(&out[i])
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: sqlite: Incr on key %q, which %w", backend.ErrInvalid, k, errHoldsBlock)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tx runs f in a transaction and commits it; any error rolls it back. A
// contract error from f is returned as is, a database error wrapped.
func (s *Store) tx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("begin", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		if errors.Is(err, backend.ErrInvalid) {
			return err
		}
		return wrap("write", err)
	}
	return wrap("commit", tx.Commit())
}

// SetBlock implements backend.Backend.
func (s *Store) SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.end()
	if err := backend.CheckTTL(ttl); err != nil {
		return err
	}
	if err := backend.CheckKey(key); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO kv(key, kind, n, v, exp) VALUES (?1, 1, NULL, ?2, ?3)
		ON CONFLICT(key) DO UPDATE SET kind = 1, n = NULL, v = ?2, exp = ?3`,
		key, value, s.expiry(s.now(), ttl))
	return wrap("set block", err)
}

// Get implements backend.Backend with one SELECT ... IN.
func (s *Store) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	defer s.end()
	if err := backend.CheckKeys(keys); err != nil {
		return nil, err
	}
	out := make([]backend.Entry, len(keys))
	for i, k := range keys {
		out[i].Key = k
	}
	if len(keys) == 0 {
		return out, nil
	}
	now := s.now()
	args := make([]any, 0, len(keys)+1)
	args = append(args, now.UnixNano())
	for _, k := range keys {
		args = append(args, k)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT key, kind, n, v, exp FROM kv
		WHERE (exp = 0 OR exp > ?1) AND key IN (`+placeholders(2, len(keys))+`)`, args...)
	if err != nil {
		return nil, wrap("get", err)
	}
	found := map[string]backend.Entry{}
	err = scanRows(rows, now, func(e backend.Entry) { found[e.Key] = e })
	if err != nil {
		return nil, wrap("get", err)
	}
	for i, k := range keys {
		if e, ok := found[k]; ok {
			out[i] = e
		}
	}
	return out, nil
}

// placeholders returns "?first, ?first+1, ..." for n arguments.
func placeholders(first, n int) string {
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("?" + strconv.Itoa(first+i))
	}
	return sb.String()
}

// scanRows reads rows of (key, kind, n, v, exp) as entries, closing rows.
func scanRows(rows *sql.Rows, now time.Time, each func(backend.Entry)) error {
	defer rows.Close()
	for rows.Next() {
		var (
			e    = backend.Entry{Found: true}
			kind int
			n    sql.NullInt64
			v    []byte
			exp  int64
		)
		if err := rows.Scan(&e.Key, &kind, &n, &v, &exp); err != nil {
			return err
		}
		if kind == kindCounter {
			e.Value = strconv.AppendInt(nil, n.Int64, 10)
		} else {
			e.Value = append([]byte{}, v...) // never nil, a copy
		}
		if exp != 0 {
			e.TTL = time.Unix(0, exp).Sub(now) // > 0: expired rows are filtered out
		}
		each(e)
	}
	return rows.Err()
}

// Delete implements backend.Backend.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.end()
	if err := backend.CheckKeys(keys); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	_, err := s.db.ExecContext(ctx, `DELETE FROM kv WHERE key IN (`+placeholders(1, len(keys))+`)`, args...)
	return wrap("delete", err)
}

// Scan implements backend.Backend with keyset pagination: the cursor is the
// last key returned, and a page is the live keys after it in key order,
// selected by a range on the primary key (prefix <= key < prefix+"\x7f").
//
// Neither LIKE nor GLOB: LIKE is case-insensitive for ASCII and gives % and
// _ a meaning, GLOB gives * ? [ a meaning, and keys hold all of these. And
// no OFFSET: a key deleted between two pages would shift every later key
// one place back, and the next page would skip one that was never deleted.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]backend.Entry, string, error) {
	if err := s.begin(ctx); err != nil {
		return nil, "", err
	}
	defer s.end()
	if err := backend.CheckPrefix(prefix); err != nil {
		return nil, "", err
	}
	if cursor != "" {
		if err := backend.CheckKey(cursor); err != nil || !strings.HasPrefix(cursor, prefix) {
			return nil, "", fmt.Errorf("%w: sqlite: Scan cursor %q was not returned by a scan of prefix %q", backend.ErrInvalid, cursor, prefix)
		}
	}
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	now := s.now()
	// Every key byte is below 0x7f, so prefix+"\x7f" bounds the range; the
	// empty prefix has no upper bound.
	upper := "\x7f"
	if prefix != "" {
		upper = prefix + "\x7f"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT key, kind, n, v, exp FROM kv
		WHERE key > ?1 AND key >= ?2 AND key < ?3 AND (exp = 0 OR exp > ?4)
		ORDER BY key LIMIT ?5`, cursor, prefix, upper, now.UnixNano(), limit)
	if err != nil {
		return nil, "", wrap("scan", err)
	}
	var out []backend.Entry
	if err := scanRows(rows, now, func(e backend.Entry) { out = append(out, e) }); err != nil {
		return nil, "", wrap("scan", err)
	}
	next := ""
	if len(out) == limit {
		next = out[len(out)-1].Key
	}
	return out, next, nil
}

// Close implements backend.Backend: it waits for the calls in flight,
// then closes the database. Later calls return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}
