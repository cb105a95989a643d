package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base32"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/go-defender/defender/admin"
	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/defender"
)

// bcryptCost is the cost of the demo's password hashes: what a real login
// costs, so that load tests measure something real.
const bcryptCost = 10

//go:embed site/*.html
var siteFS embed.FS

var siteTmpl = template.Must(template.ParseFS(siteFS, "site/*.html"))

// credFlag collects repeatable NAME:PASSWORD flags.
type credFlag struct {
	name  string
	creds []cred
}

type cred struct{ user, password string }

func (c *credFlag) String() string { return "" }

func (c *credFlag) Set(v string) error {
	user, pw, ok := strings.Cut(v, ":")
	user = strings.TrimSpace(user)
	if !ok || user == "" || pw == "" {
		return fmt.Errorf("want NAME:PASSWORD, got %q", v)
	}
	c.creds = append(c.creds, cred{user, pw})
	return nil
}

// randomPassword returns 12 random characters in 3 groups, easy to copy.
func randomPassword() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	s := strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))[:12]
	return s[:4] + "-" + s[4:8] + "-" + s[8:]
}

// demoSite is the login site: users with bcrypt hashes and in-memory
// sessions.
type demoSite struct {
	users     map[string][]byte // canonical username -> bcrypt hash
	dummy     []byte            // hash compared for unknown users (same cost)
	field     string            // the username form/JSON field
	protected bool

	mu       sync.Mutex
	sessions map[string]string // cookie value -> username
}

const sessionCookie = "demo_session"

// loginPage is what site/login.html renders.
type loginPage struct {
	Field, Username, Error string
	Protected              bool
}

func (s *demoSite) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := siteTmpl.ExecuteTemplate(w, name, data); err != nil {
		slog.Error("demo: template", "err", err)
	}
}

// home shows who is logged in.
func (s *demoSite) home(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	user := ""
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		user = s.sessions[c.Value]
		s.mu.Unlock()
	}
	s.render(w, http.StatusOK, "home.html", map[string]any{"User": user, "Protected": s.protected})
}

// credentials returns the username and the password of a login. Under
// defender, the username is the one the middleware read and counted
// (defender.LoginFrom): the site never parses it again, so that the name it
// authenticates is exactly the name that is counted. Only the password is
// read here, from the form or the JSON body. The unprotected site
// (--no-defender) reads both itself.
func (s *demoSite) credentials(r *http.Request) (user, pw string, isJSON bool, err error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON = ct == "application/json"
	info, counted := defender.LoginFrom(r)
	if isJSON {
		var body map[string]any
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil {
			return "", "", true, err
		}
		user, _ = body[s.field].(string)
		pw, _ = body["password"].(string)
	} else {
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return "", "", false, err
		}
		user, pw = r.PostFormValue(s.field), r.PostFormValue("password")
	}
	if counted {
		user = info.Username
	}
	return user, pw, isJSON, nil
}

// verify checks the password with bcrypt, looking the user up by the
// canonical form of the name (defender.CanonicalUsername): "Alice",
// "ALICE" and "ａｌｉｃｅ" are alice, as defender counts them. Unknown users
// cost the same.
func (s *demoSite) verify(user, pw string) bool {
	hash, ok := s.users[defender.CanonicalUsername(user)]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(s.dummy, []byte(pw))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(pw)) == nil
}

// login serves GET /login (the form) and POST /login (the attempt). Under
// defender's middleware, the middleware checks and counts; this handler
// reports the result explicitly.
func (s *demoSite) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.render(w, http.StatusOK, "login.html", loginPage{Field: s.field, Protected: s.protected})
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	user, pw, isJSON, err := s.credentials(r)
	if err != nil {
		defender.ReportFailure(r)
		if isJSON {
			writeJSONStatus(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "bad JSON body"})
			return
		}
		http.Error(w, "bad request body", http.StatusBadRequest)
		return
	}
	if !s.verify(user, pw) {
		defender.ReportFailure(r)
		if isJSON {
			writeJSONStatus(w, http.StatusUnauthorized, map[string]any{"ok": false, "error": "wrong username or password"})
			return
		}
		s.render(w, http.StatusOK, "login.html", loginPage{Field: s.field, Username: user, Error: "Wrong username or password.", Protected: s.protected})
		return
	}
	defender.ReportSuccess(r)
	token := rand.Text()
	s.mu.Lock()
	s.sessions[token] = defender.TrimUsername(user)
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Location", "/")
	if isJSON {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusSeeOther)
		json.NewEncoder(w).Encode(map[string]any{"ok": true, "username": defender.TrimUsername(user)})
		return
	}
	w.WriteHeader(http.StatusSeeOther)
}

// logout ends the session.
func (s *demoSite) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// hashPasswords stores a bcrypt hash of each password (and of a random one
// for unknown users), hashing in parallel.
func (s *demoSite) hashPasswords(creds []cred) error {
	type res struct {
		user string
		hash []byte
		err  error
	}
	out := make(chan res, len(creds)+1)
	for _, c := range append(creds, cred{"", randomPassword()}) {
		go func() {
			h, err := bcrypt.GenerateFromPassword([]byte(c.password), bcryptCost)
			out <- res{c.user, h, err}
		}()
	}
	var first error
	for range len(creds) + 1 {
		r := <-out
		switch {
		case r.err != nil && first == nil:
			first = usagef("--user %s: %v", r.user, r.err)
		case r.user == "":
			s.dummy = r.hash
		default:
			s.users[defender.CanonicalUsername(r.user)] = r.hash
		}
	}
	return first
}

// runDemo runs the demo site until ctx is cancelled (SIGINT, SIGTERM).
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "[--addr 127.0.0.1:8080] [--store URL] [--audit URL] [--user NAME:PASSWORD]... [--admin NAME:PASSWORD] [--no-defender]", stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (port 0 picks a free port)")
	storeFlag := fs.String("store", "", "store URL (default DEFENDER_STORE_URL, else bolt file "+defaultStoreFile+" in the working directory)")
	auditFlag := fs.String("audit", "", "audit sink URL, or none (default DEFENDER_AUDIT_URL, else file "+defaultAuditFile+" in the working directory)")
	users := &credFlag{name: "user"}
	fs.Var(users, "user", "a demo user NAME:PASSWORD (repeatable; default: alice and bob with random passwords, printed)")
	adminCred := &credFlag{name: "admin"}
	fs.Var(adminCred, "admin", "the admin account NAME:PASSWORD for /admin/defender/ (default: admin with a random password, printed)")
	noDefender := fs.Bool("no-defender", false, "serve the same site without protection (the baseline for load tests)")
	if err := parseFlags(fs, args); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return usagef("%v", err)
		}
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if len(adminCred.creds) > 1 {
		return usagef("--admin given more than once")
	}

	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// Users and the admin account.
	site := &demoSite{users: map[string][]byte{}, field: cfg.UsernameFormField, protected: !*noDefender, sessions: map[string]string{}}
	if site.field == "" {
		site.field = "username"
	}
	printUsers := len(users.creds) == 0
	if printUsers {
		users.creds = []cred{{"alice", randomPassword()}, {"bob", randomPassword()}}
	}
	printAdmin := len(adminCred.creds) == 0
	if printAdmin {
		adminCred.creds = []cred{{"admin", randomPassword()}}
	}
	adminUser := adminCred.creds[0]

	mux := http.NewServeMux()
	mux.HandleFunc("/", site.home)
	mux.HandleFunc("/logout", site.logout)
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })

	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	storeShown, auditShown := "none (--no-defender)", "none"
	if *noDefender {
		mux.HandleFunc("/login", site.login)
		mux.HandleFunc("/admin/defender/", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "defender is off (--no-defender): there is no admin", http.StatusNotFound)
		})
	} else {
		raw, err := storeURL(*storeFlag, cfg)
		if err != nil {
			return err
		}
		setting := "DEFENDER_STORE_URL"
		if *storeFlag != "" {
			setting = "--store"
		}
		cfg.StoreURL = raw
		store, err := openStore(ctx, raw, setting)
		if err != nil {
			return err
		}
		cleanups = append(cleanups, func() { store.Close() })
		storeShown = backend.Redact(raw)

		auditRaw, auditSetting := *auditFlag, "--audit"
		if auditRaw == "" {
			auditRaw, auditSetting = cfg.AuditURL, "DEFENDER_AUDIT_URL"
		}
		if auditRaw == "" {
			if auditRaw, err = defaultAuditURL(); err != nil {
				return err
			}
		}
		opts := &defender.Options{Logger: log}
		var sink auditlog.Sink
		if auditRaw != "none" {
			a, err := openAudit(ctx, auditRaw, auditSetting, log)
			if err != nil {
				return err
			}
			cleanups = append(cleanups, a.close)
			sink, opts.Audit = a.sink, a.rec
			auditShown = auditlog.Redact(auditRaw)
		}
		cfg.AuditURL = ""
		d, err := defender.New(store, cfg, opts)
		if err != nil {
			return err
		}
		cleanups = append(cleanups, func() { d.Close() })
		mw, err := defender.NewMiddleware(d, nil)
		if err != nil {
			return err
		}
		mux.Handle("/login", mw.Wrap(http.HandlerFunc(site.login)))
		aopts := admin.Options{Authorize: admin.BasicAuth(adminUser.user, adminUser.password), Logger: log}
		if sink != nil {
			aopts.Attempts = sink
		}
		ah, err := admin.New(d, aopts)
		if err != nil {
			return err
		}
		mux.Handle("/admin/defender/", http.StripPrefix("/admin/defender", ah))
	}

	// Hash the passwords last, once every setting has been checked: a bad
	// setting fails fast.
	if err := site.hashPasswords(users.creds); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return usagef("--addr %s: %v", *addr, err)
	}
	base := "http://" + ln.Addr().String()
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	fmt.Fprintf(stdout, "defender demo listening on %s\n", base)
	fmt.Fprintf(stdout, "  login:  %s/login\n", base)
	if printUsers {
		names := make([]string, 0, len(users.creds))
		for _, c := range users.creds {
			names = append(names, c.user+" / "+c.password)
		}
		sort.Strings(names)
		fmt.Fprintf(stdout, "  users:  %s\n", strings.Join(names, ", "))
	}
	if *noDefender {
		fmt.Fprintf(stdout, "  defender is OFF (--no-defender): logins are not protected\n")
	} else {
		fmt.Fprintf(stdout, "  admin:  %s/admin/defender/", base)
		if printAdmin {
			fmt.Fprintf(stdout, " (user %s, password %s)", adminUser.user, adminUser.password)
		}
		fmt.Fprintln(stdout)
		fmt.Fprintf(stdout, "  store:  %s\n  audit:  %s\n", storeShown, auditShown)
	}
	fmt.Fprintf(stdout, "press Ctrl-C to stop\n")
	if f, ok := stdout.(interface{ Sync() error }); ok {
		_ = f.Sync()
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("demo: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

var _ = flag.ErrHelp
