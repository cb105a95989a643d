package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"
)

// axesSite is the django-axes-like baseline: the demo's login handler with
// the database on every login, as django-axes does it. Before the password
// is verified it counts the failures of the client IP or the username in
// the cool-off window with one query; after, it inserts the attempt,
// synchronously, in SQLite with synchronous=FULL (every commit fsynced).
// Lockout rule as defender's: with limit N, failure N+1 is the last one
// verified and gets the lockout answer; later attempts are refused before
// verification.
type axesSite struct {
	db      *sql.DB
	users   map[string][]byte
	dummy   []byte
	limit   int
	cooloff time.Duration
}

const axesSchema = `
CREATE TABLE IF NOT EXISTS access_attempt (
	id INTEGER PRIMARY KEY,
	attempt_time INTEGER NOT NULL,
	ip_address TEXT NOT NULL,
	username TEXT NOT NULL,
	user_agent TEXT NOT NULL,
	path_info TEXT NOT NULL,
	login_valid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS access_attempt_ip ON access_attempt (ip_address, attempt_time);
CREATE INDEX IF NOT EXISTS access_attempt_user ON access_attempt (username, attempt_time);
`

// openAxes opens (creating) the SQLite database at path.
func openAxes(path string, users map[string]string, limit int, cooloff time.Duration) (*axesSite, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(axesSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("axes schema: %w", err)
	}
	s := &axesSite{db: db, users: map[string][]byte{}, limit: limit, cooloff: cooloff}
	for u, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), 10)
		if err != nil {
			db.Close()
			return nil, err
		}
		s.users[strings.ToLower(u)] = h
	}
	s.dummy, _ = bcrypt.GenerateFromPassword([]byte("not a password"), 10)
	return s, nil
}

// clientIP is the right-most X-Forwarded-For address when the peer is on
// loopback (the load generator), else the peer.
func clientIP(r *http.Request) string {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	peer, err := netip.ParseAddr(host)
	if err == nil && peer.IsLoopback() {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			if a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return a.Unmap().String()
			}
		}
	}
	return host
}

// failures counts the failures of ip or username within the cool-off.
func (s *axesSite) failures(ctx context.Context, ip, user string) (int, error) {
	var n int
	since := time.Now().Add(-s.cooloff).UnixNano()
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM access_attempt
		WHERE login_valid = 0 AND attempt_time > ? AND (ip_address = ? OR username = ?)`,
		since, ip, user).Scan(&n)
	return n, err
}

func (s *axesSite) record(ctx context.Context, r *http.Request, ip, user string, ok bool) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO access_attempt
		(attempt_time, ip_address, username, user_agent, path_info, login_valid) VALUES (?, ?, ?, ?, ?, ?)`,
		time.Now().UnixNano(), ip, user, r.UserAgent(), r.URL.Path, ok)
	return err
}

func (s *axesSite) locked(w http.ResponseWriter) {
	w.Header().Set("Retry-After", fmt.Sprint(int(s.cooloff.Seconds())))
	http.Error(w, "locked out", http.StatusTooManyRequests)
}

func (s *axesSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/login" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<form method="post"><input name="username"><input name="password" type="password"><button>Log in</button></form>`)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request body", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	user := strings.ToLower(strings.TrimSpace(r.PostFormValue("username")))
	ip := clientIP(r)
	n, err := s.failures(ctx, ip, user)
	if err != nil {
		http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if n > s.limit {
		s.locked(w)
		return
	}
	hash, known := s.users[user]
	if !known {
		hash = s.dummy
	}
	ok := bcrypt.CompareHashAndPassword(hash, []byte(r.PostFormValue("password"))) == nil && known
	if err := s.record(ctx, r, ip, user, ok); err != nil {
		http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	switch {
	case ok:
		w.Header().Set("Location", "/")
		w.WriteHeader(http.StatusSeeOther)
	case n+1 > s.limit:
		s.locked(w)
	default:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "Wrong username or password.")
	}
}

// runAxes serves the baseline until ctx ends: axes-server --addr ADDR --db
// PATH --user NAME:PASSWORD.
func runAxes(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("axes-server", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	dbPath := fs.String("db", "axes.db", "SQLite file")
	creds := map[string]string{}
	fs.Func("user", "a user NAME:PASSWORD (repeatable)", func(v string) error {
		name, pw, ok := strings.Cut(v, ":")
		if !ok || name == "" {
			return errors.New("want NAME:PASSWORD")
		}
		creds[name] = pw
		return nil
	})
	limit := fs.Int("limit", 3, "failure limit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := openAxes(*dbPath, creds, *limit, 300*time.Second)
	if err != nil {
		return err
	}
	defer s.db.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "axes-like baseline listening on http://%s\n", ln.Addr())
	return serve(ctx, ln, s)
}
