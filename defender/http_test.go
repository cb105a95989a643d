package defender_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// clock is a fake clock shared by the engine and the memory store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder keeps audit records: it tells how each attempt was settled.
type recorder struct {
	mu   sync.Mutex
	recs []auditlog.Record
}

func (r *recorder) Record(rec auditlog.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

func (r *recorder) all() []auditlog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]auditlog.Record(nil), r.recs...)
}

// outcomes summarises the records as "s" (success), "f" (failure) and "l"
// (locked), in order.
func (r *recorder) outcomes() string {
	var b strings.Builder
	for _, rec := range r.all() {
		switch {
		case rec.Locked:
			b.WriteByte('l')
		case rec.Success:
			b.WriteByte('s')
		default:
			b.WriteByte('f')
		}
	}
	return b.String()
}

// fixture is a Defender on a memory store with a fake clock, and a protected
// demo login handler.
type fixture struct {
	t     *testing.T
	clock *clock
	store *memory.Store
	d     *defender.Defender
	m     *defender.Middleware
	audit *recorder
	h     http.Handler
	logs  *bytes.Buffer
}

type fixtureOpts struct {
	cfg     func(*defender.Config)
	mw      *defender.MiddlewareOptions
	handler http.Handler // default: demoLogin
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: newClock(), audit: &recorder{}, logs: &bytes.Buffer{}}
	st, err := memory.New(&memory.Options{Now: f.clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	f.store = st
	t.Cleanup(func() { _ = st.Close() })
	cfg := defender.DefaultConfig()
	cfg.AuditCoalesceWindow = 0 // one record per attempt, unless a test says otherwise
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.d, err = defender.New(st, cfg, &defender.Options{Now: f.clock.Now, Audit: f.audit, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.d.Close() })
	f.m, err = defender.NewMiddleware(f.d, o.mw)
	if err != nil {
		t.Fatal(err)
	}
	h := o.handler
	if h == nil {
		h = demoLogin(cfg.UsernameFormField)
	}
	f.h = f.m.Wrap(h)
	return f
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// users of the demo login handler.
var users = map[string]string{"alice": "wonderland", "bob": "builder"}

// demoLogin is the demo site's /login (demo.md): GET gives the form; a POST
// with the right password redirects 303 to /, a wrong one gives 200 with
// the form (JSON: 401).
func demoLogin(field string) http.Handler {
	if field == "" {
		field = "username"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, `<form method="post">login form</form>`)
			return
		}
		// The username is the one the middleware counted (LoginFrom),
		// looked up in canonical form; only the password is read here.
		info, _ := defender.LoginFrom(r)
		user := info.Canonical
		var pass string
		isJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
		if isJSON {
			var body struct {
				Password string `json:"password"`
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				http.Error(w, "bad json", http.StatusBadRequest)
				return
			}
			pass = body.Password
		} else {
			pass = r.PostFormValue("password")
		}
		if p, ok := users[user]; ok && p == pass {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "s-" + user})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "flash", Value: "wrong"})
		if isJSON {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid credentials"}`)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<p>wrong username or password</p><form method="post">login form</form>`)
	})
}

// req describes one request to the fixture.
type req struct {
	method string
	peer   string // RemoteAddr host; default 192.0.2.1
	form   url.Values
	json   any
	body   io.Reader
	ctype  string
	header map[string]string
}

func (f *fixture) do(q req) *httptest.ResponseRecorder {
	f.t.Helper()
	return serve(f.h, q)
}

func serve(h http.Handler, q req) *httptest.ResponseRecorder {
	if q.method == "" {
		q.method = http.MethodPost
		if q.form == nil && q.json == nil && q.body == nil {
			q.method = http.MethodGet
		}
	}
	var body io.Reader
	switch {
	case q.form != nil:
		body = strings.NewReader(q.form.Encode())
		if q.ctype == "" {
			q.ctype = "application/x-www-form-urlencoded"
		}
	case q.json != nil:
		b, _ := json.Marshal(q.json)
		body = bytes.NewReader(b)
		if q.ctype == "" {
			q.ctype = "application/json"
		}
	case q.body != nil:
		body = q.body
	}
	r := httptest.NewRequest(q.method, "/login", body)
	if q.ctype != "" {
		r.Header.Set("Content-Type", q.ctype)
	}
	peer := q.peer
	if peer == "" {
		peer = "192.0.2.1"
	}
	r.RemoteAddr = peer + ":40000"
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func login(user, pass string) url.Values { return url.Values{"username": {user}, "password": {pass}} }

// wrong posts a wrong password for user from peer.
func (f *fixture) wrong(user, peer string) *httptest.ResponseRecorder {
	return f.do(req{form: login(user, "nope"), peer: peer})
}

func assertStatus(t *testing.T, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status %d, want %d; body %q", w.Code, want, w.Body.String())
	}
}

func assertLocked(t *testing.T, w *httptest.ResponseRecorder, retryAfter string) {
	t.Helper()
	assertStatus(t, w, http.StatusTooManyRequests)
	if got := w.Header().Get("Retry-After"); got != retryAfter {
		t.Fatalf("Retry-After %q, want %q", got, retryAfter)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Fatalf("Cache-Control %q", got)
	}
}

// TestDemoLoginRows drives every demo.md row about /login.
func TestDemoLoginRows(t *testing.T) {
	t.Run("GET form", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		w := f.do(req{})
		assertStatus(t, w, 200)
		if !strings.Contains(w.Body.String(), "login form") {
			t.Fatalf("body %q", w.Body)
		}
		if len(f.audit.all()) != 0 {
			t.Fatal("a GET was recorded as an attempt")
		}
	})
	t.Run("POST success redirects", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		w := f.do(req{form: login("alice", "wonderland")})
		assertStatus(t, w, http.StatusSeeOther)
		if w.Header().Get("Location") != "/" || !strings.Contains(w.Header().Get("Set-Cookie"), "session=s-alice") {
			t.Fatalf("header %v", w.Header())
		}
		if got := f.audit.outcomes(); got != "s" {
			t.Fatalf("outcomes %q", got)
		}
	})
	t.Run("POST JSON success", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		w := f.do(req{json: map[string]string{"username": "alice", "password": "wonderland"}})
		assertStatus(t, w, http.StatusSeeOther)
	})
	t.Run("POST wrong password", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		w := f.wrong("alice", "")
		assertStatus(t, w, 200)
		if !strings.Contains(w.Body.String(), "wrong username or password") {
			t.Fatalf("body %q", w.Body)
		}
		w = f.do(req{json: map[string]string{"username": "alice", "password": "x"}})
		assertStatus(t, w, http.StatusUnauthorized)
		if got := f.audit.outcomes(); got != "ff" {
			t.Fatalf("outcomes %q", got)
		}
	})
	t.Run("failure limit+1 is locked, then every request", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		for i := 0; i < 3; i++ {
			assertStatus(t, f.wrong("alice", ""), 200)
		}
		w := f.wrong("alice", "")
		assertLocked(t, w, "300")
		if sc := w.Header().Get("Set-Cookie"); sc != "" {
			t.Fatalf("the handler's cookie leaked into the lockout response: %q", sc)
		}
		if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		f.clock.Advance(100 * time.Second)
		assertLocked(t, f.do(req{}), "200")                                   // GET
		assertLocked(t, f.do(req{form: login("alice", "wonderland")}), "200") // right password, not verified
		assertLocked(t, f.do(req{method: http.MethodPut}), "200")             // an attempt too: counted as locked
		f.clock.Advance(199*time.Second + 500*time.Millisecond)
		assertLocked(t, f.do(req{}), "1") // rounded up
		f.clock.Advance(time.Second)
		assertStatus(t, f.do(req{form: login("alice", "wonderland")}), http.StatusSeeOther)
		if got := f.audit.outcomes(); got != "fffllls" {
			t.Fatalf("outcomes %q", got)
		}
		if !strings.Contains(f.logs.String(), "defender: locked") {
			t.Fatalf("no lockout log: %s", f.logs)
		}
	})
	t.Run("permanent block has no Retry-After", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{cfg: func(c *defender.Config) { c.LockoutCooloffTimes = []time.Duration{0} }})
		for i := 0; i < 3; i++ {
			f.wrong("alice", "")
		}
		w := f.wrong("alice", "")
		assertLocked(t, w, "")
		if !strings.Contains(w.Body.String(), "Contact an admin") {
			t.Fatalf("body %q", w.Body)
		}
		f.clock.Advance(1000 * time.Hour)
		assertLocked(t, f.do(req{}), "")
		w = f.do(req{header: map[string]string{"Accept": "application/json"}})
		assertLocked(t, w, "")
		assertJSON(t, w, map[string]any{"error": "locked", "retry_after": 0.0, "permanent": true})
	})
	t.Run("LOCKOUT_URL redirects", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{cfg: func(c *defender.Config) { c.LockoutURL = "https://example.com/locked?x=1" }})
		for i := 0; i < 3; i++ {
			f.wrong("alice", "")
		}
		w := f.wrong("alice", "")
		assertStatus(t, w, http.StatusSeeOther)
		if w.Header().Get("Location") != "https://example.com/locked?x=1" || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("header %v", w.Header())
		}
		w = f.do(req{})
		assertStatus(t, w, http.StatusFound)
		if w.Header().Get("Location") != "https://example.com/locked?x=1" {
			t.Fatalf("header %v", w.Header())
		}
		// A JSON client gets JSON, not a redirect to a page.
		w = f.do(req{header: map[string]string{"Accept": "application/json"}})
		assertLocked(t, w, "300")
	})
	t.Run("LOCKOUT_TEMPLATE context", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "lockout.html")
		tmpl := `limit={{.failure_limit}} secs={{.cooloff_time_seconds}} mins={{.cooloff_time_minutes}} left={{.seconds_remaining}} perm={{.permanent}}`
		if err := os.WriteFile(path, []byte(tmpl), 0o600); err != nil {
			t.Fatal(err)
		}
		f := newFixture(t, fixtureOpts{cfg: func(c *defender.Config) {
			c.LockoutTemplate = path
			c.FailureLimit = 2
			c.LockoutCooloffTimes = []time.Duration{90 * time.Second, 600 * time.Second}
		}})
		for i := 0; i < 2; i++ {
			f.wrong("alice", "")
		}
		w := f.wrong("alice", "")
		assertLocked(t, w, "90")
		if got, want := w.Body.String(), "limit=2 secs=90 mins=1.5 left=90 perm=false"; got != want {
			t.Fatalf("body %q, want %q", got, want)
		}
		f.clock.Advance(30 * time.Second)
		w = f.do(req{})
		if got, want := w.Body.String(), "limit=2 secs=90 mins=1.5 left=60 perm=false"; got != want {
			t.Fatalf("body %q, want %q", got, want)
		}
		// The second lockout of the IP escalates to 600s.
		f.clock.Advance(61 * time.Second)
		for i := 0; i < 3; i++ {
			f.wrong("carol", "")
		}
		w = f.do(req{})
		if got, want := w.Body.String(), "limit=2 secs=600 mins=10 left=600 perm=false"; got != want {
			t.Fatalf("body %q, want %q", got, want)
		}
	})
	t.Run("store down is 503", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		_ = f.store.Close()
		for _, q := range []req{{}, {form: login("alice", "wonderland")}} {
			w := f.do(q)
			assertStatus(t, w, http.StatusServiceUnavailable)
			if w.Header().Get("Cache-Control") != "no-store" || !strings.Contains(w.Body.String(), "temporarily unavailable") {
				t.Fatalf("%v %q", w.Header(), w.Body)
			}
		}
		w := f.do(req{json: map[string]string{"username": "alice", "password": "wonderland"}})
		assertStatus(t, w, http.StatusServiceUnavailable)
		assertJSON(t, w, map[string]any{"error": "unavailable"})
		if !strings.Contains(f.logs.String(), "store unavailable") {
			t.Fatalf("no log: %s", f.logs)
		}
	})
}

// assertJSON checks that w's body is a JSON object holding want's members.
func assertJSON(t *testing.T, w *httptest.ResponseRecorder, want map[string]any) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %v, want %v (body %s)", k, got[k], v, w.Body)
		}
	}
}

// TestLockoutSameForUnknownUsers: the lockout response of an unknown
// username is byte for byte that of an existing one.
func TestLockoutSameForUnknownUsers(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var bodies [2]string
	var headers [2]http.Header
	for i, user := range []string{"alice", "nosuchuser"} {
		peer := fmt.Sprintf("192.0.2.%d", 10+i)
		var w *httptest.ResponseRecorder
		for j := 0; j < 4; j++ {
			w = f.wrong(user, peer)
		}
		assertLocked(t, w, "300")
		bodies[i], headers[i] = w.Body.String(), w.Header()
	}
	if bodies[0] != bodies[1] || fmt.Sprint(headers[0]) != fmt.Sprint(headers[1]) {
		t.Fatalf("responses differ:\n%v %q\n%v %q", headers[0], bodies[0], headers[1], bodies[1])
	}
}

// TestLockoutModes: each lockout mode, through HTTP.
func TestLockoutModes(t *testing.T) {
	const a, b = "198.51.100.1", "198.51.100.2"
	tests := []struct {
		name string
		cfg  func(*defender.Config)
		// after alice fails 4 times from a:
		sameIPOtherUser, otherIPSameUser, getSameIP int
	}{
		{"default", nil, 429, 429, 429},
		{"pair", func(c *defender.Config) { c.LockOutByIPAndUsername = true }, 200, 200, 200},
		{"disable IP", func(c *defender.Config) { c.DisableIPLockout = true }, 200, 429, 200},
		{"disable username", func(c *defender.Config) { c.DisableUsernameLockout = true }, 429, 200, 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{cfg: tt.cfg})
			for i := 0; i < 3; i++ {
				assertStatus(t, f.wrong("alice", a), 200)
			}
			assertStatus(t, f.wrong("alice", a), 429)
			assertStatus(t, f.wrong("alice", a), 429)
			assertStatus(t, f.wrong("bob", a), tt.sameIPOtherUser)
			assertStatus(t, f.wrong("alice", b), tt.otherIPSameUser)
			assertStatus(t, f.do(req{peer: a}), tt.getSameIP)
		})
	}
}

// TestProxyHeader: X-Forwarded-For is believed from a trusted proxy only.
func TestProxyHeader(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: func(c *defender.Config) {
		c.BehindReverseProxy = true
		c.DisableUsernameLockout = true
	}})
	xff := func(v string) map[string]string { return map[string]string{"X-Forwarded-For": v} }
	post := func(peer, fwd string) int {
		return f.do(req{form: login("alice", "nope"), peer: peer, header: xff(fwd)}).Code
	}
	// Through the trusted proxy 10.0.0.1, each client is its own key.
	for i := 0; i < 3; i++ {
		if c := post("10.0.0.1", "203.0.113.5"); c != 200 {
			t.Fatalf("attempt %d: %d", i, c)
		}
	}
	if c := post("10.0.0.1", "203.0.113.5"); c != 429 {
		t.Fatalf("client 203.0.113.5 not locked: %d", c)
	}
	// The client's own forged entry on the left does not help it.
	if c := post("10.0.0.1", "192.0.2.99, 203.0.113.5"); c != 429 {
		t.Fatalf("forged left-most entry escaped: %d", c)
	}
	if c := post("10.0.0.1", "203.0.113.6"); c != 200 {
		t.Fatalf("other client locked: %d", c)
	}
	// From an untrusted peer the header is ignored: rotating it never helps.
	for i := 0; i < 3; i++ {
		if c := post("198.51.100.7", fmt.Sprintf("203.0.113.%d", 100+i)); c != 200 {
			t.Fatalf("attempt %d: %d", i, c)
		}
	}
	if c := post("198.51.100.7", "203.0.113.200"); c != 429 {
		t.Fatalf("untrusted peer escaped by rotating X-Forwarded-For: %d", c)
	}
	// ...and the forged addresses were never keyed.
	if c := f.do(req{peer: "10.0.0.1", header: xff("203.0.113.100")}).Code; c != 200 {
		t.Fatalf("forged address got blocked: %d", c)
	}
	for _, rec := range f.audit.all() {
		if strings.HasPrefix(rec.IP, "203.0.113.1") || strings.HasPrefix(rec.IP, "203.0.113.2") {
			t.Fatalf("forged address recorded: %+v", rec)
		}
	}
}

// handlerFor answers with status and header set by the test.
func handlerFor(status int, header map[string]string, before func(r *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if before != nil {
			before(r)
		}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "handler body")
	})
}

// TestFailureDetection: the rules that classify a POST's answer.
func TestFailureDetection(t *testing.T) {
	loc := map[string]string{"Location": "/"}
	failHdr := map[string]string{"X-Login": "failed"}
	isFailure := func(status int, h http.Header) bool { return h.Get("X-Login") == "failed" }
	tests := []struct {
		name    string
		mw      *defender.MiddlewareOptions
		status  int
		header  map[string]string
		before  func(r *http.Request)
		success bool
	}{
		{"default 303 with Location", nil, 303, loc, nil, true},
		{"default 302 with Location", nil, 302, loc, nil, true},
		{"default 302 without Location", nil, 302, nil, nil, false},
		{"default 200", nil, 200, nil, nil, false},
		{"default 201 with Location", nil, 201, loc, nil, false},
		{"default 401", nil, 401, nil, nil, false},
		{"default 500", nil, 500, nil, nil, false},
		{"status list: 401 fails", &defender.MiddlewareOptions{FailureStatus: []int{401, 403}}, 401, nil, nil, false},
		{"status list: 403 fails", &defender.MiddlewareOptions{FailureStatus: []int{401, 403}}, 403, nil, nil, false},
		{"status list: 200 succeeds", &defender.MiddlewareOptions{FailureStatus: []int{401, 403}}, 200, nil, nil, true},
		{"status list: 400 succeeds", &defender.MiddlewareOptions{FailureStatus: []int{401, 403}}, 400, nil, nil, true},
		{"status list: 5xx always fails", &defender.MiddlewareOptions{FailureStatus: []int{401}}, 502, nil, nil, false},
		{"predicate: failed header", &defender.MiddlewareOptions{IsFailure: isFailure}, 200, failHdr, nil, false},
		{"predicate: plain 200", &defender.MiddlewareOptions{IsFailure: isFailure}, 200, nil, nil, true},
		{"predicate: 500 is its call", &defender.MiddlewareOptions{IsFailure: isFailure}, 500, nil, nil, true},
		{"report success wins over default", nil, 200, nil, func(r *http.Request) { defender.ReportSuccess(r) }, true},
		{"report failure wins over redirect", nil, 303, loc, func(r *http.Request) { defender.ReportFailure(r) }, false},
		{"report failure wins over status list", &defender.MiddlewareOptions{FailureStatus: []int{401}}, 200, nil,
			func(r *http.Request) { defender.ReportFailure(r) }, false},
		{"report success wins over predicate", &defender.MiddlewareOptions{IsFailure: isFailure}, 200, failHdr,
			func(r *http.Request) { defender.ReportSuccess(r) }, true},
		{"last report wins", nil, 200, nil,
			func(r *http.Request) { defender.ReportFailure(r); defender.ReportSuccess(r) }, true},
		{"report through a derived request", nil, 200, nil, func(r *http.Request) {
			defender.ReportSuccess(r.WithContext(context.WithValue(r.Context(), struct{}{}, 1)))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{mw: tt.mw, handler: handlerFor(tt.status, tt.header, tt.before)})
			w := f.do(req{form: login("alice", "x")})
			assertStatus(t, w, tt.status)
			if w.Body.String() != "handler body" {
				t.Fatalf("body %q", w.Body)
			}
			want := "f"
			if tt.success {
				want = "s"
			}
			if got := f.audit.outcomes(); got != want {
				t.Fatalf("outcome %q, want %q", got, want)
			}
		})
	}
}

// TestReportOutsideMiddleware: a report that cannot be taken says so.
func TestReportOutsideMiddleware(t *testing.T) {
	r := httptest.NewRequest("POST", "/", nil)
	if defender.ReportSuccess(r) || defender.ReportFailure(r) {
		t.Fatal("report taken outside the middleware")
	}
	var late, early bool
	f := newFixture(t, fixtureOpts{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		early = defender.ReportSuccess(r)
		w.WriteHeader(200)
		late = defender.ReportFailure(r) // too late: already settled as a success
	})})
	f.do(req{form: login("alice", "x")})
	if !early || late {
		t.Fatalf("early %v late %v", early, late)
	}
	if got := f.audit.outcomes(); got != "s" {
		t.Fatalf("outcomes %q", got)
	}
	// A GET is not an attempt: nothing to report to.
	var got bool
	f = newFixture(t, fixtureOpts{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = defender.ReportFailure(r)
	})})
	f.do(req{})
	if got {
		t.Fatal("report taken on a GET")
	}
}

// TestHandlerWritesNothing: a handler that returns without writing answers
// 200, which the default heuristic counts as a failure; on the blocking
// failure the lockout response is written instead.
func TestHandlerWritesNothing(t *testing.T) {
	f := newFixture(t, fixtureOpts{handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})})
	for i := 0; i < 3; i++ {
		w := f.do(req{form: login("alice", "x")})
		assertStatus(t, w, 200)
		if w.Body.Len() != 0 {
			t.Fatalf("body %q", w.Body)
		}
	}
	assertLocked(t, f.do(req{form: login("alice", "x")}), "300")
	if got := f.audit.outcomes(); got != "fffl" {
		t.Fatalf("outcomes %q", got)
	}
}

// TestLockoutReplacesStreamingHandler: a handler that writes without a
// WriteHeader, and writes again after its answer was replaced, sees no
// error and leaks nothing.
func TestLockoutReplacesStreamingHandler(t *testing.T) {
	var writeErr error
	f := newFixture(t, fixtureOpts{cfg: func(c *defender.Config) { c.FailureLimit = 1 },
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Secret", "1")
			_, writeErr = io.WriteString(w, "part one;")
			w.WriteHeader(500) // superfluous
			_, _ = io.WriteString(w, "part two")
			http.NewResponseController(w).Flush()
		})})
	w := f.do(req{form: login("alice", "x")})
	if w.Code != 200 || w.Body.String() != "part one;part two" {
		t.Fatalf("%d %q", w.Code, w.Body)
	}
	w = f.do(req{form: login("alice", "x")})
	assertLocked(t, w, "300")
	if writeErr != nil || strings.Contains(w.Body.String(), "part") || w.Header().Get("X-Secret") != "" {
		t.Fatalf("err %v, leaked %v %q", writeErr, w.Header(), w.Body)
	}
}

// TestBodies: where the username comes from.
func TestBodies(t *testing.T) {
	multipartBody := func(fields map[string]string) (io.Reader, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, v := range fields {
			_ = mw.WriteField(k, v)
		}
		_ = mw.Close()
		return &buf, mw.FormDataContentType()
	}
	mpBody, mpType := multipartBody(map[string]string{"username": "Alice", "password": "x"})
	tests := []struct {
		name string
		mw   *defender.MiddlewareOptions
		q    req
		want string // the username recorded
	}{
		{"form", nil, req{form: login("alice", "x")}, "alice"},
		{"form, as typed (trimmed)", nil, req{form: login("  Alice ", "x")}, "Alice"},
		{"multipart form", nil, req{body: mpBody, ctype: mpType}, "Alice"},
		{"query string, as r.FormValue sees it", nil, req{method: "POST", body: strings.NewReader(""),
			ctype: "application/x-www-form-urlencoded", header: nil}, ""},
		{"json", nil, req{json: map[string]any{"username": "alice", "password": "x"}}, "alice"},
		{"json upper-case type", nil, req{body: strings.NewReader(`{"username":"alice"}`), ctype: "Application/JSON; charset=utf-8"}, "alice"},
		{"json +json type", nil, req{body: strings.NewReader(`{"username":"alice"}`), ctype: "application/vnd.api+json"}, "alice"},
		{"json other members skipped", nil, req{body: strings.NewReader(`{"a":{"username":"x"},"b":[1,2],"username":"alice"}`), ctype: "application/json"}, "alice"},
		{"json empty object", nil, req{body: strings.NewReader(`{}`), ctype: "application/json"}, ""},
		{"json escapes", nil, req{body: strings.NewReader(`{"username":"\u0061lice"}`), ctype: "application/json"}, "alice"},
		{"custom field", &defender.MiddlewareOptions{UsernameField: "email"},
			req{form: url.Values{"email": {"a@example.com"}}}, "a@example.com"},
		{"custom field json", &defender.MiddlewareOptions{UsernameField: "email"},
			req{json: map[string]string{"email": "a@example.com"}}, "a@example.com"},
		{"GetUsername sees the parsed form", &defender.MiddlewareOptions{GetUsername: func(r *http.Request) string {
			return "x-" + r.PostFormValue("username")
		}}, req{form: login("alice", "x")}, "x-alice"},
		{"GetUsername reads the restored JSON body", &defender.MiddlewareOptions{GetUsername: func(r *http.Request) string {
			var v struct{ Login string }
			_ = json.NewDecoder(r.Body).Decode(&v)
			return v.Login
		}}, req{json: map[string]string{"login": "alice"}}, "alice"},
		{"empty text body", nil, req{body: strings.NewReader(""), ctype: "text/plain"}, ""},
		{"no body", nil, req{method: "POST"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var handlerSaw string
			f := newFixture(t, fixtureOpts{mw: tt.mw, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.Header.Get("Content-Type"), "json") {
					b, _ := io.ReadAll(r.Body)
					handlerSaw = string(b)
				}
				w.WriteHeader(401)
			})})
			w := f.do(tt.q)
			assertStatus(t, w, 401)
			recs := f.audit.all()
			if len(recs) != 1 || recs[0].Username != tt.want {
				t.Fatalf("records %+v, want username %q", recs, tt.want)
			}
			if tt.q.json != nil && tt.mw == nil {
				want, _ := json.Marshal(tt.q.json)
				if handlerSaw != string(want) {
					t.Fatalf("handler read %q, want %q", handlerSaw, want)
				}
			}
		})
	}
	t.Run("query string username", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{handler: handlerFor(200, nil, nil)})
		r := httptest.NewRequest("POST", "/login?username=alice", strings.NewReader("password=x"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		f.h.ServeHTTP(httptest.NewRecorder(), r)
		if recs := f.audit.all(); len(recs) != 1 || recs[0].Username != "alice" {
			t.Fatalf("records %+v", recs)
		}
	})
	t.Run("GetUsername on GET", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{mw: &defender.MiddlewareOptions{GetUsername: func(r *http.Request) string {
			if u := r.URL.Query().Get("u"); u != "" {
				return u
			}
			return r.PostFormValue("username")
		}}})
		for i := 0; i < 4; i++ {
			f.wrong("alice", fmt.Sprintf("192.0.2.%d", 50+i)) // username blocked, no IP blocked
		}
		r := httptest.NewRequest("GET", "/login?u=alice", nil)
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		assertLocked(t, w, "300")
	})
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestLargeBody: a 10 MiB body is not read whole, the handler is not
// called, and the POST still counts as a failed attempt of its IP.
func TestLargeBody(t *testing.T) {
	const size = 10 << 20
	for _, ctype := range []string{"application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=x"} {
		t.Run(ctype, func(t *testing.T) {
			called := false
			f := newFixture(t, fixtureOpts{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true })})
			var w *httptest.ResponseRecorder
			for i := 0; i < 3; i++ {
				prefix := "username=alice&password="
				if strings.HasPrefix(ctype, "multipart") {
					prefix = "--x\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n"
				}
				body := &countingReader{r: io.MultiReader(strings.NewReader(prefix), strings.NewReader(strings.Repeat("a", size)))}
				w = f.do(req{body: body, ctype: ctype})
				assertStatus(t, w, http.StatusRequestEntityTooLarge)
				if body.n > 2*defender.DefaultMaxBodyBytes {
					t.Fatalf("read %d bytes of a %d-byte body", body.n, size)
				}
			}
			if called {
				t.Fatal("handler called")
			}
			w = f.do(req{body: strings.NewReader(strings.Repeat("a", size)), ctype: "application/json"})
			assertLocked(t, w, "300")
			recs := f.audit.all()
			if len(recs) != 4 || recs[0].Username != "" || recs[0].IP != "192.0.2.1" || f.audit.outcomes() != "fffl" {
				t.Fatalf("records %+v", recs)
			}
		})
	}
	t.Run("JSON client", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		w := f.do(req{body: strings.NewReader(strings.Repeat("a", 100)), ctype: "application/json"})
		assertStatus(t, w, 400) // within the bound: the handler ran (bad JSON)
		f = newFixture(t, fixtureOpts{mw: &defender.MiddlewareOptions{MaxBodyBytes: 10}})
		w = f.do(req{body: strings.NewReader(strings.Repeat("a", 100)), ctype: "application/json"})
		assertStatus(t, w, http.StatusRequestEntityTooLarge)
		assertJSON(t, w, map[string]any{"error": "request_too_large"})
	})
}

// TestOtherBodiesUntouched: a body of a media type the middleware does not
// read is refused (it could name a username the middleware cannot see),
// unless GetUsername names the identity: then it is not bounded either and
// the handler gets it whole.
func TestOtherBodiesUntouched(t *testing.T) {
	var n int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ = io.Copy(io.Discard, r.Body)
	})
	f := newFixture(t, fixtureOpts{handler: h})
	w := f.do(req{body: strings.NewReader(strings.Repeat("x", 1<<20)), ctype: "application/xml"})
	assertStatus(t, w, http.StatusBadRequest)
	if n != 0 || w.Header().Get(defender.ReasonHeader) != "refused" {
		t.Fatalf("handler read %d bytes; reason %q", n, w.Header().Get(defender.ReasonHeader))
	}
	f = newFixture(t, fixtureOpts{handler: h, mw: &defender.MiddlewareOptions{GetUsername: func(r *http.Request) string { return "alice" }}})
	f.do(req{body: strings.NewReader(strings.Repeat("x", 1<<20)), ctype: "application/xml"})
	if n != 1<<20 {
		t.Fatalf("handler read %d bytes", n)
	}
}

// TestPanickingHandler: a panic settles the attempt as one failure and
// propagates unchanged.
func TestPanickingHandler(t *testing.T) {
	boom := errors.New("boom")
	f := newFixture(t, fixtureOpts{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") == "panic" {
			panic(boom)
		}
		demoLogin("").ServeHTTP(w, r)
	})})
	for i := 0; i < 3; i++ {
		func() {
			defer func() {
				if p := recover(); p != boom {
					t.Fatalf("recovered %v, want %v", p, boom)
				}
			}()
			f.do(req{form: login("alice", "panic")})
			t.Fatal("no panic")
		}()
	}
	if got := f.audit.outcomes(); got != "fff" {
		t.Fatalf("outcomes %q: each panic must count once", got)
	}
	// Three counted failures: the fourth is the blocking one.
	assertLocked(t, f.wrong("alice", ""), "300")

	// Through a real server: http.ErrAbortHandler aborts the response, and
	// a panic after the answer was committed does not count twice.
	f = newFixture(t, fixtureOpts{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") == "late" {
			w.WriteHeader(200)
		}
		panic(http.ErrAbortHandler)
	})})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	for _, pass := range []string{"abort", "late"} {
		resp, err := http.PostForm(srv.URL, login("alice", pass))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if pass == "abort" && err == nil {
			t.Fatal("aborted response arrived")
		}
	}
	if got := f.audit.outcomes(); got != "ff" {
		t.Fatalf("outcomes %q", got)
	}
}

// TestRealServer: the wrapped writer keeps http.ResponseController working
// (flush, 103 Early Hints) on a real server.
func TestRealServer(t *testing.T) {
	f := newFixture(t, fixtureOpts{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetWriteDeadline through Unwrap: %v", err)
		}
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		_, _ = io.WriteString(w, "streamed")
	})})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	resp, err := http.PostForm(srv.URL, login("alice", "x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "streamed" {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	if got := f.audit.outcomes(); got != "f" {
		t.Fatalf("outcomes %q", got)
	}
	// Flushing the replaced answer of a blocking failure is harmless.
	f = newFixture(t, fixtureOpts{cfg: func(c *defender.Config) { c.FailureLimit = 1 },
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
		})})
	srv2 := httptest.NewServer(f.h)
	defer srv2.Close()
	for i, want := range []int{200, 429} {
		resp, err := http.PostForm(srv2.URL, login("alice", "x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("attempt %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// TestContentNegotiation: who gets JSON.
func TestContentNegotiation(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: func(c *defender.Config) { c.DisableUsernameLockout = true }})
	for i := 0; i < 4; i++ {
		f.wrong("alice", "")
	}
	long := strings.Repeat("text/plain, ", 200) + "application/json"
	many := strings.Repeat("a/b,", 40) + "application/json"
	tests := []struct {
		accept, ctype string
		json          bool
	}{
		{"", "", false},
		{"application/json", "", true},
		{"application/problem+json", "", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "", false},
		{"application/json;q=0.5, text/html", "", false},
		{"text/html;q=0.4, application/json;q=0.9", "", true},
		{"text/html;q=bogus, application/json;q=0.1", "", true},
		{"Application/JSON; charset=utf-8", "", true},
		{"*/*", "application/json", true},
		{"", "application/json; charset=utf-8", true},
		{"text/html", "application/json", false},
		{"application/json;q=2", "", false},
		{long, "", false}, // past the length bound
		{many, "", false}, // past the item bound
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/login", nil)
		r.RemoteAddr = "192.0.2.1:1"
		if tt.accept != "" {
			r.Header.Set("Accept", tt.accept)
		}
		if tt.ctype != "" {
			r.Header.Set("Content-Type", tt.ctype)
		}
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		gotJSON := w.Header().Get("Content-Type") == "application/json"
		if w.Code != 429 || gotJSON != tt.json {
			t.Errorf("Accept %q Content-Type %q: %d JSON %v, want %v", tt.accept, tt.ctype, w.Code, gotJSON, tt.json)
		}
	}
	// Two Accept lines.
	r := httptest.NewRequest("GET", "/login", nil)
	r.RemoteAddr = "192.0.2.1:1"
	r.Header.Add("Accept", "text/plain")
	r.Header.Add("Accept", "application/json")
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	assertJSON(t, w, map[string]any{"error": "locked", "retry_after": 300.0, "permanent": false})
	// HEAD: headers only.
	r = httptest.NewRequest("HEAD", "/login", nil)
	r.RemoteAddr = "192.0.2.1:1"
	w = httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != 429 || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Fatalf("HEAD: %d %v %q", w.Code, w.Header(), w.Body)
	}
}

// TestServeLockout: the response writer for direct users of the Attempt API.
func TestServeLockout(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	r := httptest.NewRequest("GET", "/x", nil)
	w := httptest.NewRecorder()
	f.m.ServeLockout(w, r, defender.Decision{})
	if w.Code != 200 || w.Body.Len() != 0 || len(w.Header()) != 0 {
		t.Fatalf("Allow wrote %d %v", w.Code, w.Header())
	}
	w = httptest.NewRecorder()
	f.m.ServeLockout(w, r, defender.Decision{Verdict: defender.Locked, RetryAfter: 1500 * time.Millisecond})
	assertLocked(t, w, "2")
	w = httptest.NewRecorder()
	f.m.ServeLockout(w, r, defender.Decision{Verdict: defender.Locked, RetryAfter: 0})
	assertLocked(t, w, "1")
	w = httptest.NewRecorder()
	f.m.ServeLockout(w, r, defender.Decision{Verdict: defender.Unavailable, FailMode: defender.FailClosed})
	assertStatus(t, w, 503)
}

// TestLockoutStatusAndTemplateErrors: a configured status; a template that
// fails at execution falls back to the built-in page.
func TestLockoutStatusAndTemplateErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.html")
	if err := os.WriteFile(path, []byte(`{{template "nosuch"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{cfg: func(c *defender.Config) {
		c.LockoutStatus = 403
		c.LockoutTemplate = path
	}})
	for i := 0; i < 4; i++ {
		f.wrong("alice", "")
	}
	w := f.do(req{})
	assertStatus(t, w, 403)
	if !strings.Contains(w.Body.String(), "try again in 5 minutes") {
		t.Fatalf("body %q", w.Body)
	}
	if !strings.Contains(f.logs.String(), "lockout template failed") {
		t.Fatalf("logs %s", f.logs)
	}
}

// TestNewMiddlewareErrors: bad options and templates are errors naming the
// setting.
func TestNewMiddlewareErrors(t *testing.T) {
	st, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.html")
	if err := os.WriteFile(bad, []byte("{{.x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  func(*defender.Config)
		opts *defender.MiddlewareOptions
		is   error
		msg  string
	}{
		{"negative body", nil, &defender.MiddlewareOptions{MaxBodyBytes: -1}, defender.ErrMiddlewareOptions, "MaxBodyBytes"},
		{"both rules", nil, &defender.MiddlewareOptions{FailureStatus: []int{401}, IsFailure: func(int, http.Header) bool { return true }},
			defender.ErrMiddlewareOptions, "FailureStatus or IsFailure"},
		{"bad status", nil, &defender.MiddlewareOptions{FailureStatus: []int{401, 99}}, defender.ErrMiddlewareOptions, "FailureStatus 99"},
		{"missing template", func(c *defender.Config) { c.LockoutTemplate = filepath.Join(dir, "none.html") }, nil,
			defender.ErrConfig, "DEFENDER_LOCKOUT_TEMPLATE"},
		{"unparsable template", func(c *defender.Config) { c.LockoutTemplate = bad }, nil, defender.ErrConfig, "DEFENDER_LOCKOUT_TEMPLATE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defender.DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			d, err := defender.New(st, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			m, err := defender.NewMiddleware(d, tt.opts)
			if m != nil || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, %v; want %v containing %q", m, err, tt.is, tt.msg)
			}
		})
	}
	if _, err := defender.NewMiddleware(nil, nil); !errors.Is(err, defender.ErrMiddlewareOptions) {
		t.Fatalf("nil Defender: %v", err)
	}
	d, err := defender.New(st, defender.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m, err := defender.NewMiddleware(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, fn := range map[string]func(){
		"Wrap(nil)":         func() { m.Wrap(nil) },
		"BasicAuth(_, nil)": func() { m.BasicAuth("", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			fn()
		}()
	}
}

// TestBasicAuth: an API authenticated by HTTP Basic on every request.
func TestBasicAuth(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	verify := func(ctx context.Context, u, p string) bool {
		if p == "panic" {
			panic("verify panicked")
		}
		return users[u] == p && p != ""
	}
	api := f.m.BasicAuth("api", verify)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _, _ := r.BasicAuth()
		fmt.Fprintf(w, "hello %s", u)
	}))
	call := func(user, pass string, auth bool, peer string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/api/me", nil)
		r.RemoteAddr = peer + ":1"
		r.Header.Set("Accept", "application/json")
		if auth {
			r.SetBasicAuth(user, pass)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		return w
	}
	const a = "192.0.2.7"
	w := call("", "", false, a)
	assertStatus(t, w, 401)
	if got := w.Header().Get("WWW-Authenticate"); got != `Basic realm="api", charset="UTF-8"` {
		t.Fatalf("challenge %q", got)
	}
	w = call("alice", "wonderland", true, a)
	if w.Code != 200 || w.Body.String() != "hello alice" {
		t.Fatalf("%d %q", w.Code, w.Body)
	}
	for i := 0; i < 2; i++ {
		w = call("alice", "nope", true, a)
		assertStatus(t, w, 401)
		assertJSON(t, w, map[string]any{"error": "unauthorized"})
	}
	func() {
		defer func() {
			if recover() != "verify panicked" {
				t.Fatal("panic lost")
			}
		}()
		call("alice", "panic", true, a)
	}()
	assertLocked(t, call("alice", "nope", true, a), "300")                 // 4th failure blocks
	assertLocked(t, call("alice", "wonderland", true, a), "300")           // not verified
	assertLocked(t, call("", "", false, a), "300")                         // blocked IP, no credentials
	assertLocked(t, call("alice", "wonderland", true, "192.0.2.8"), "300") // blocked username
	if got := f.audit.outcomes(); got != "sffflll" {
		t.Fatalf("outcomes %q", got)
	}
	// Text clients and the default realm.
	plain := f.m.BasicAuth("", verify)(http.NotFoundHandler())
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.9:1"
	r.SetBasicAuth("bob", "x")
	w = httptest.NewRecorder()
	plain.ServeHTTP(w, r)
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Basic realm="restricted", charset="UTF-8"` ||
		!strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	if got := defender.UsernameFromBasicAuth(r); got != "bob" {
		t.Fatalf("UsernameFromBasicAuth %q", got)
	}
}

// TestTemplateCooloffEstimate: the cooloff shown is the shortest configured
// lockout covering the time remaining, else the longest.
func TestTemplateCooloffEstimate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.html")
	if err := os.WriteFile(path, []byte(`{{.cooloff_time_seconds}}/{{.seconds_remaining}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{cfg: func(c *defender.Config) {
		c.LockoutTemplate = path
		c.LockoutCooloffTimes = []time.Duration{60 * time.Second, 600 * time.Second, 0}
	}})
	for _, tt := range []struct {
		dec  defender.Decision
		want string
	}{
		{defender.Decision{Verdict: defender.Locked, RetryAfter: 30 * time.Second}, "60/30"},
		{defender.Decision{Verdict: defender.Locked, RetryAfter: 61 * time.Second}, "600/61"},
		{defender.Decision{Verdict: defender.Locked, RetryAfter: time.Hour}, "600/3600"},
		{defender.Decision{Verdict: defender.Locked, Permanent: true}, "0/0"},
	} {
		w := httptest.NewRecorder()
		f.m.ServeLockout(w, httptest.NewRequest("GET", "/", nil), tt.dec)
		if w.Body.String() != tt.want {
			t.Errorf("%+v: %q, want %q", tt.dec, w.Body, tt.want)
		}
	}
}

// TestFlusher: the wrapped writer is an http.Flusher that commits the
// answer first.
func TestFlusher(t *testing.T) {
	f := newFixture(t, fixtureOpts{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/")
		w.WriteHeader(http.StatusSeeOther)
		w.(http.Flusher).Flush()
	})})
	w := f.do(req{form: login("alice", "x")})
	if w.Code != http.StatusSeeOther || !w.Flushed {
		t.Fatalf("%d flushed %v", w.Code, w.Flushed)
	}
	if got := f.audit.outcomes(); got != "s" {
		t.Fatalf("outcomes %q", got)
	}
}

// TestFailModesThroughHTTP: with the store down, closed answers 503 without
// calling the handler; open lets the handler answer; local keeps counting
// in process, so the lockout still happens.
func TestFailModesThroughHTTP(t *testing.T) {
	tests := []struct {
		mode  defender.FailMode
		codes []int // four wrong passwords, then a GET
	}{
		{defender.FailClosed, []int{503, 503, 503, 503, 503}},
		{defender.FailOpen, []int{200, 200, 200, 200, 200}},
		{defender.FailLocal, []int{200, 200, 200, 429, 429}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			called := 0
			f := newFixture(t, fixtureOpts{
				cfg: func(c *defender.Config) { c.FailMode = tt.mode },
				handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					called++
					demoLogin("").ServeHTTP(w, r)
				}),
			})
			_ = f.store.Close()
			var got []int
			for i := 0; i < 4; i++ {
				got = append(got, f.wrong("alice", "").Code)
			}
			got = append(got, f.do(req{}).Code)
			if fmt.Sprint(got) != fmt.Sprint(tt.codes) {
				t.Fatalf("codes %v, want %v", got, tt.codes)
			}
			if tt.mode == defender.FailClosed && called != 0 {
				t.Fatalf("handler called %d times with the store down, fail mode closed", called)
			}
		})
	}
}
