package defender_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// benchBody is a reusable request body.
type benchBody struct{ strings.Reader }

func (*benchBody) Close() error { return nil }

// benchWriter is a reusable ResponseWriter that discards the body.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }

// benchLogin is a login handler without a password hash: what is left is
// the HTTP work every login does (parse the form, answer).
var benchLogin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.FormValue("password") == "secret" {
		w.Header().Set("Location", "/")
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	w.WriteHeader(http.StatusOK)
})

// runBench serves the same request to h b.N times, resetting what a
// request and a writer accumulate.
func runBench(b *testing.B, h http.Handler, method, form string, want int) {
	r := httptest.NewRequest(method, "/login", nil)
	r.RemoteAddr = "192.0.2.1:5000"
	if form != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	body := &benchBody{}
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(form)
		r.Body, r.Form, r.PostForm = body, nil, nil
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, r)
	}
	if w.code != want {
		b.Fatalf("status %d, want %d", w.code, want)
	}
}

func benchMiddleware(b *testing.B) http.Handler {
	st, err := memory.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	cfg := defender.DefaultConfig()
	cfg.StoreAccessAttempts = false
	cfg.FailureLimit = 1 << 30
	d, err := defender.New(st, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	m, err := defender.NewMiddleware(d, nil)
	if err != nil {
		b.Fatal(err)
	}
	return m.Wrap(benchLogin)
}

const (
	benchRight = "username=alice&password=secret"
	benchWrong = "username=alice&password=guess"
)

// BenchmarkBareHandler is the login handler alone: the baseline of
// BenchmarkMiddleware.
func BenchmarkBareHandler(b *testing.B) {
	b.Run("post-success", func(b *testing.B) { runBench(b, benchLogin, "POST", benchRight, 303) })
	b.Run("post-failure", func(b *testing.B) { runBench(b, benchLogin, "POST", benchWrong, 200) })
	b.Run("get", func(b *testing.B) { runBench(b, benchLogin, "GET", "", 200) })
}

// BenchmarkMiddleware is the same handler under Middleware.Wrap on the
// memory backend: the difference to BenchmarkBareHandler is defender's
// whole cost per request (client IP, body parse, check, reserve, settle).
func BenchmarkMiddleware(b *testing.B) {
	b.Run("post-success", func(b *testing.B) { runBench(b, benchMiddleware(b), "POST", benchRight, 303) })
	b.Run("post-failure", func(b *testing.B) { runBench(b, benchMiddleware(b), "POST", benchWrong, 200) })
	b.Run("get", func(b *testing.B) { runBench(b, benchMiddleware(b), "GET", "", 200) })
}

// discardRecorder takes audit records and drops them (the Writer's own cost
// is measured in package auditlog).
type discardRecorder struct{}

func (discardRecorder) Record(auditlog.Record) {}

// BenchmarkLockedFlood is a POST from a blocked client under the
// middleware with the audit log on (coalesced): what a brute-force flood
// costs per request once the block is known.
func BenchmarkLockedFlood(b *testing.B) {
	st, err := memory.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	cfg := defender.DefaultConfig()
	d, err := defender.New(st, cfg, &defender.Options{Audit: discardRecorder{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	m, err := defender.NewMiddleware(d, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := m.Wrap(benchLogin)
	for _, accept := range []string{"text/html", "application/json"} {
		b.Run(accept, func(b *testing.B) {
			r := httptest.NewRequest("POST", "/login", nil)
			r.RemoteAddr = "192.0.2.1:5000"
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Accept", accept)
			body := &benchBody{}
			w := &benchWriter{h: http.Header{}}
			for i := 0; i < 5; i++ { // block the client
				body.Reset(benchWrong)
				r.Body, r.Form, r.PostForm = body, nil, nil
				h.ServeHTTP(w, r)
			}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(benchWrong)
				r.Body, r.Form, r.PostForm = body, nil, nil
				clear(w.h)
				w.code = 0
				h.ServeHTTP(w, r)
			}
			if w.code != http.StatusTooManyRequests {
				b.Fatalf("status %d, want 429", w.code)
			}
		})
	}
}
