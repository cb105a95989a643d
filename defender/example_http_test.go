package defender_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// post sends a form to h as client 192.0.2.1 and returns the answer.
func post(h http.Handler, path string, form url.Values) *http.Response {
	r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "192.0.2.1:5000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// get fetches path from h as client 192.0.2.1.
func get(h http.Handler, path string) *http.Response {
	r := httptest.NewRequest("GET", path, nil)
	r.RemoteAddr = "192.0.2.1:5000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// Protecting a login handler on the standard ServeMux. The handler takes
// the username the middleware read and counted (LoginFrom), looks the user
// up by its canonical form, and reads only the password itself. A POST
// answered with a redirect is a successful login, anything else a failure.
func ExampleMiddleware_Wrap() {
	store, err := memory.New(nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	d, err := defender.New(store, defender.DefaultConfig(), nil) // 3 failures allowed, 300s lockout
	if err != nil {
		panic(err)
	}
	defer d.Close()
	m, err := defender.NewMiddleware(d, nil)
	if err != nil {
		panic(err)
	}

	passwords := map[string]string{"alice": "secret"} // keyed by canonical username
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, ok := defender.LoginFrom(r) // ok for the POSTs the middleware counted
		if ok && passwords[info.Canonical] == r.PostFormValue("password") && r.PostFormValue("password") != "" {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		fmt.Fprint(w, "<form method=post>...</form>") // the form, with an error after a POST
	})
	mux := http.NewServeMux()
	mux.Handle("/login", m.Wrap(login))

	wrong := url.Values{"username": {"alice"}, "password": {"guess"}}
	for i := 1; i <= 4; i++ {
		resp := post(mux, "/login", wrong)
		fmt.Println("attempt", i, resp.StatusCode, resp.Header.Get("Retry-After") != "")
	}
	resp := get(mux, "/login")
	fmt.Println("GET", resp.StatusCode, "Retry-After:", resp.Header.Get("Retry-After"))
	// Output:
	// attempt 1 200 false
	// attempt 2 200 false
	// attempt 3 200 false
	// attempt 4 429 true
	// GET 429 Retry-After: 300
}

// With chi (or any router built on net/http), Wrap is a router middleware.
func ExampleMiddleware_Wrap_chi() {
	store, _ := memory.New(nil)
	defer store.Close()
	d, _ := defender.New(store, defender.DefaultConfig(), nil)
	defer d.Close()
	m, err := defender.NewMiddleware(d, nil)
	if err != nil {
		panic(err)
	}

	r := chi.NewRouter()
	r.Route("/login", func(r chi.Router) {
		r.Use(m.Wrap)
		r.Get("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "login form") })
		r.Post("/", func(w http.ResponseWriter, r *http.Request) {
			if r.FormValue("password") == "secret" {
				http.Redirect(w, r, "/", http.StatusFound)
				return
			}
			fmt.Fprint(w, "wrong password")
		})
	})

	fmt.Println(post(r, "/login", url.Values{"username": {"bob"}, "password": {"secret"}}).StatusCode)
	fmt.Println(post(r, "/login", url.Values{"username": {"bob"}, "password": {"nope"}}).StatusCode)
	// Output:
	// 302
	// 200
}

// A JSON API token endpoint (the Django REST framework recipe): the
// username comes from the JSON body, success is a 200 with a token, so the
// failure rule is the status: 401 is a failure. A locked client gets JSON.
func ExampleMiddleware_Wrap_jsonAPI() {
	store, _ := memory.New(nil)
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1
	d, _ := defender.New(store, cfg, nil)
	defer d.Close()
	m, err := defender.NewMiddleware(d, &defender.MiddlewareOptions{FailureStatus: []int{http.StatusUnauthorized}})
	if err != nil {
		panic(err)
	}

	token := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, _ := defender.LoginFrom(r) // the username the middleware counted
		var creds struct{ Password string }
		if err := json.NewDecoder(r.Body).Decode(&creds); err != nil { // the body was restored for us
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if info.Canonical != "alice" || creds.Password != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid credentials"}`)
			return
		}
		fmt.Fprint(w, `{"token":"t0k3n"}`)
	}))

	for _, body := range []string{
		`{"username":"alice","password":"secret"}`,
		`{"username":"alice","password":"x"}`,
		`{"username":"alice","password":"y"}`,
		`{"username":"alice","password":"secret"}`,
	} {
		r := httptest.NewRequest("POST", "/api/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = "192.0.2.1:5000"
		w := httptest.NewRecorder()
		token.ServeHTTP(w, r)
		fmt.Println(w.Code, strings.TrimSpace(w.Body.String()))
	}
	// Output:
	// 200 {"token":"t0k3n"}
	// 401 {"error":"invalid credentials"}
	// 429 {"error":"locked","message":"Too many login attempts. Please try again later.","permanent":false,"retry_after":300}
	// 429 {"error":"locked","message":"Too many login attempts. Please try again later.","permanent":false,"retry_after":300}
}

// An API authenticated by HTTP Basic credentials on every request.
func ExampleMiddleware_BasicAuth() {
	store, _ := memory.New(nil)
	defer store.Close()
	d, _ := defender.New(store, defender.DefaultConfig(), nil)
	defer d.Close()
	m, _ := defender.NewMiddleware(d, nil)

	verify := func(ctx context.Context, username, password string) bool {
		// username is canonical: "Alice" and "ALICE" arrive as "alice".
		return username == "alice" && password == "secret" // use a constant-time hash compare in real code
	}
	api := m.BasicAuth("api", verify)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "the data")
	}))

	call := func(password string) {
		r := httptest.NewRequest("GET", "/api/data", nil)
		r.RemoteAddr = "192.0.2.1:5000"
		r.SetBasicAuth("alice", password)
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprint(w.Code, " ", w.Header().Get("WWW-Authenticate"))))
	}
	call("secret")
	for range 4 {
		call("guess")
	}
	// Output:
	// 200
	// 401 Basic realm="api", charset="UTF-8"
	// 401 Basic realm="api", charset="UTF-8"
	// 401 Basic realm="api", charset="UTF-8"
	// 429
}

// A password-reset form limited by e-mail address (django-defender's
// "adapting for password reset forms"): every submission counts, whatever
// the answer, so the identity is the address and IsFailure always says
// failure. A completed reset unblocks the address.
func ExampleMiddleware_Wrap_passwordReset() {
	store, _ := memory.New(nil)
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.DisableIPLockout = true // limit by address only (keep the IP limit in production if you can)
	d, _ := defender.New(store, cfg, nil)
	defer d.Close()
	m, err := defender.NewMiddleware(d, &defender.MiddlewareOptions{
		UsernameField: "email", // canonical form: " Alice@Example.COM" and "alice@example.com" are one identity
		IsFailure:     func(int, http.Header) bool { return true },
	})
	if err != nil {
		panic(err)
	}
	reset := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// send the reset mail when the address exists; answer the same either way
		http.Redirect(w, r, "/password-reset/done", http.StatusSeeOther)
	}))
	for _, addr := range []string{"alice@example.com", "Alice@Example.com", " ALICE@example.com", "alice@example.com"} {
		fmt.Println(post(reset, "/password-reset", url.Values{"email": {addr}}).StatusCode)
	}
	// The reset was completed (the confirm view): clear the address's block.
	unblocked, _ := d.UnblockUsername(context.Background(), "alice@example.com")
	fmt.Println("unblocked:", unblocked)
	fmt.Println(post(reset, "/password-reset", url.Values{"email": {"alice@example.com"}}).StatusCode)
	// Output:
	// 303
	// 303
	// 303
	// 429
	// unblocked: true
	// 303
}

// A handler that knows better than the heuristics reports the outcome.
func ExampleReportFailure() {
	store, _ := memory.New(nil)
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1
	d, _ := defender.New(store, cfg, nil)
	defer d.Close()
	m, _ := defender.NewMiddleware(d, nil)

	// This login answers 303 to a second-factor page after a wrong
	// password too (so as not to reveal which step failed).
	login := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") != "secret" {
			defender.ReportFailure(r) // before writing the answer
		}
		http.Redirect(w, r, "/second-factor", http.StatusSeeOther)
	}))
	for range 3 {
		fmt.Println(post(login, "/login", url.Values{"username": {"alice"}, "password": {"guess"}}).StatusCode)
	}
	// Output:
	// 303
	// 429
	// 429
}

// The handler takes the username from LoginFrom: the one the middleware
// read once and counted. A request that names it ambiguously (twice, in
// another case, as a non-string) is refused before the handler runs.
func ExampleLoginFrom() {
	store, _ := memory.New(nil)
	defer store.Close()
	d, _ := defender.New(store, defender.DefaultConfig(), nil)
	defer d.Close()
	m, _ := defender.NewMiddleware(d, nil)
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, _ := defender.LoginFrom(r)
		fmt.Printf("handler: typed %q, look up %q\n", info.Username, info.Canonical)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	send := func(body string) {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = "192.0.2.1:5000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprint(w.Code, " ", w.Header().Get(defender.ReasonHeader))))
	}
	send(`{"username":" ALİCE ","password":"x"}`)
	send(`{"username":"alice","password":"x","USERNAME":"decoy"}`)
	// Output:
	// handler: typed "ALİCE", look up "alice"
	// 401
	// 400 refused
}

// Verification admission control: at most VerifyConcurrency password
// checks run at once; past the queue, a login is shed (503, Retry-After)
// without being counted.
func ExampleAttempt_Admit() {
	store, _ := memory.New(nil)
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.VerifyConcurrency, cfg.VerifyQueue, cfg.VerifyQueueTimeout = 1, 1, 0
	d, _ := defender.New(store, cfg, nil)
	defer d.Close()
	ctx := context.Background()

	a := d.Attempt(ctx, defender.Login{Username: "alice"})
	release, ok := a.Admit(ctx) // the one slot
	fmt.Println("alice admitted:", ok)

	b := d.Attempt(ctx, defender.Login{Username: "bob"})
	if _, ok := b.Admit(ctx); !ok {
		fmt.Println("bob:", b.Decision().Verdict, "retry after", b.Decision().RetryAfter)
	}
	a.Failed(ctx)
	release()
	// Output:
	// alice admitted: true
	// bob: shed retry after 1s
}
