package faulttest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// demoApp is a login handler like the demo's: a map of users with bcrypt
// hashes (cost 4, for test speed); an unknown user costs a dummy bcrypt
// comparison, so that the handler itself does not tell users apart by time.
// checks counts the handler's password checks.
type demoApp struct {
	h      http.Handler
	d      *defender.Defender
	checks atomic.Int64
}

func newDemoApp(t testing.TB) *demoApp {
	t.Helper()
	st, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, st)
	cfg := defender.DefaultConfig()
	cfg.StoreAccessAttempts = false
	d, err := defender.New(st, cfg, &defender.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	hash := func(pw string) []byte {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), 4)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	users := map[string][]byte{"alice": hash("correct horse battery staple")}
	dummy := hash("dummy password for unknown users")
	app := &demoApp{d: d}
	mw, err := defender.NewMiddleware(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	app.h = mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app.checks.Add(1)
		name := strings.ToLower(strings.TrimSpace(r.FormValue("username")))
		h, ok := users[name]
		if !ok {
			h = dummy
		}
		if bcrypt.CompareHashAndPassword(h, []byte(r.FormValue("password"))) == nil && ok {
			http.Redirect(w, r, "/home", http.StatusSeeOther)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "<!doctype html><title>Log in</title><p>Invalid username or password.</p>")
	}))
	return app
}

func (a *demoApp) post(ip, user, pass string, json bool) *httptest.ResponseRecorder {
	form := url.Values{"username": {user}, "password": {pass}}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if json {
		r.Header.Set("Accept", "application/json")
	} else {
		r.Header.Set("Accept", "text/html")
	}
	r.RemoteAddr = ip + ":40000"
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, r)
	return w
}

var digits = regexp.MustCompile(`[0-9]+`)

// shape is what must not differ between an existing and an unknown user:
// the status, the header names, and the body with every number replaced.
type shape struct {
	Status  int
	Headers string
	Body    string
}

func shapeOf(w *httptest.ResponseRecorder) shape {
	var names []string
	for k := range w.Header() {
		names = append(names, k)
	}
	sort.Strings(names)
	return shape{w.Code, strings.Join(names, ","), digits.ReplaceAllString(w.Body.String(), "N")}
}

// TestUniformResponses: existing user + wrong password and unknown user get
// the same answer; so do the failure that locks each of them, and the
// requests refused while each is locked (HTML and JSON clients). Locked
// requests never reach the handler's user lookup.
func TestUniformResponses(t *testing.T) {
	for _, json := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", json), func(t *testing.T) {
			app := newDemoApp(t)
			ipN := 0
			fresh := func() string { ipN++; return fmt.Sprintf("198.51.100.%d", ipN) }
			type pair struct{ existing, unknown *httptest.ResponseRecorder }
			var steps []pair
			// Failures 1..3 (answered by the handler), failure 4 (blocks:
			// the lockout answer), then a locked request. Each from a
			// fresh IP, so that only the username counts.
			for i := 0; i < 5; i++ {
				steps = append(steps, pair{app.post(fresh(), "alice", "wrong", json), app.post(fresh(), "zelda", "wrong", json)})
			}
			before := app.checks.Load()
			steps = append(steps, pair{app.post(fresh(), "alice", "correct horse battery staple", json), app.post(fresh(), "zelda", "x", json)})
			if app.checks.Load() != before {
				t.Errorf("a locked request reached the handler's password check")
			}
			wantStatus := []int{401, 401, 401, 429, 429, 429}
			for i, p := range steps {
				e, u := shapeOf(p.existing), shapeOf(p.unknown)
				if e != u {
					t.Errorf("step %d: existing %+v\nunknown %+v", i+1, e, u)
				}
				if e.Status != wantStatus[i] {
					t.Errorf("step %d: status %d, want %d", i+1, e.Status, wantStatus[i])
				}
				if p.existing.Body.String() != p.unknown.Body.String() {
					t.Logf("step %d: bodies differ only in numbers:\n%s\n%s", i+1, p.existing.Body, p.unknown.Body)
				}
			}
			t.Logf("locked answer: %d %s", steps[4].existing.Code, shapeOf(steps[4].existing).Headers)
		})
	}
}

// TestLockCheckTiming measures the lock check (Check, as a page view or
// the first step of every login does) for an existing and an unknown
// username, interleaved, and reports the medians. Nothing is asserted on
// wall-clock time: the check never looks at the user database, so the
// difference is noise; BenchmarkLockCheckExisting/Unknown give the
// numbers.
func TestLockCheckTiming(t *testing.T) {
	app := newDemoApp(t)
	ip := netip.MustParseAddr("192.0.2.7")
	const n = 4000
	var ex, un []time.Duration
	for i := 0; i < n; i++ {
		for _, name := range []string{"alice", "zelda"} {
			start := time.Now()
			dec := app.d.Check(ctxBG, defender.Login{IP: ip, Username: name})
			el := time.Since(start)
			if !dec.Allowed() {
				t.Fatalf("%s locked", name)
			}
			if name == "alice" {
				ex = append(ex, el)
			} else {
				un = append(un, el)
			}
		}
	}
	slices.Sort(ex)
	slices.Sort(un)
	t.Logf("lock check median: existing %v, unknown %v (p90 %v / %v), %d samples each", ex[n/2], un[n/2], ex[n*9/10], un[n*9/10], n)
	// What is deterministic: the same work, measured as allocations, for
	// the check and for a refused (locked) login.
	allocs := func(f func()) float64 { return testing.AllocsPerRun(200, f) }
	ce := allocs(func() { app.d.Check(ctxBG, defender.Login{IP: ip, Username: "alice"}) })
	cu := allocs(func() { app.d.Check(ctxBG, defender.Login{IP: ip, Username: "zelda"}) })
	if ce != cu {
		t.Errorf("check allocations: existing %v, unknown %v", ce, cu)
	}
	for _, u := range []string{"alice", "zelda"} {
		for i := 0; i < 4; i++ {
			app.post(fmt.Sprintf("198.51.100.%d", i+1), u, "wrong", false)
		}
	}
	le := allocs(func() { app.post("203.0.113.5", "alice", "guess", false) })
	lu := allocs(func() { app.post("203.0.113.5", "zelda", "guess", false) })
	if le != lu {
		t.Errorf("locked login allocations: existing %v, unknown %v", le, lu)
	}
}

func benchLockCheck(b *testing.B, user string) {
	app := newDemoApp(b)
	ip := netip.MustParseAddr("192.0.2.7")
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !app.d.Check(ctxBG, defender.Login{IP: ip, Username: user}).Allowed() {
				b.Fatal("locked")
			}
		}
	})
	// Lock the user, then measure the refused login through the middleware.
	for i := 0; i < 4; i++ {
		app.post(fmt.Sprintf("198.51.100.%d", i+1), user, "wrong", false)
	}
	b.Run("locked-post", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if w := app.post("203.0.113.5", user, "guess", false); w.Code != 429 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkLockCheckExisting measures the lock check of an existing user.
func BenchmarkLockCheckExisting(b *testing.B) { benchLockCheck(b, "alice") }

// BenchmarkLockCheckUnknown measures the lock check of an unknown user.
func BenchmarkLockCheckUnknown(b *testing.B) { benchLockCheck(b, "zelda") }
