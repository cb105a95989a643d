package faulttest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/defender"
)

// loginApp is a login handler behind defender's middleware: "right" is
// every user's password; a success redirects (303), a failure answers 401.
// verified counts the password checks the handler made.
type loginApp struct {
	h        http.Handler
	verified atomic.Int64
}

func newLoginApp(t testing.TB, d *defender.Defender) *loginApp {
	t.Helper()
	app := &loginApp{}
	mw, err := defender.NewMiddleware(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	app.h = mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app.verified.Add(1)
		if r.FormValue("password") == "right" {
			http.Redirect(w, r, "/home", http.StatusSeeOther)
			return
		}
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
	}))
	return app
}

// post sends one login POST from ip and returns the response and how long
// the middleware took.
func (a *loginApp) post(ip, user, pass string) (*httptest.ResponseRecorder, time.Duration) {
	form := url.Values{"username": {user}, "password": {pass}}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = ip + ":40000"
	w := httptest.NewRecorder()
	start := time.Now()
	a.h.ServeHTTP(w, r)
	return w, time.Since(start)
}

// get sends one GET of the login page from ip.
func (a *loginApp) get(ip string) (*httptest.ResponseRecorder, time.Duration) {
	r := httptest.NewRequest(http.MethodGet, "/login", nil)
	r.RemoteAddr = ip + ":40000"
	w := httptest.NewRecorder()
	start := time.Now()
	a.h.ServeHTTP(w, r)
	return w, time.Since(start)
}

var slowLog testing.TB

// maxDur tracks the slowest decision seen.
type maxDur struct{ v atomic.Int64 }

func (m *maxDur) add(d time.Duration) {
	if slowLog != nil && d > storeTimeout+100*time.Millisecond {
		slowLog.Logf("slow decision: %v", d)
	}
	for {
		cur := m.v.Load()
		if int64(d) <= cur || m.v.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

func (m *maxDur) get() time.Duration { return time.Duration(m.v.Load()) }
