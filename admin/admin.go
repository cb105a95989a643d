package admin

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/defender"
)

// ErrNoAuthorizer is returned by New when Options.Authorize is nil: the admin
// can unblock anyone, so it is never served without an access check.
var ErrNoAuthorizer = errors.New("admin: Options.Authorize is required")

// ErrNoDefender is returned by New when the Defender is nil.
var ErrNoDefender = errors.New("admin: a *defender.Defender is required")

// Page size bounds for the block and attempt listings.
const (
	// DefaultPageSize is the number of blocks per page when the request
	// does not say (and Options.PageSize is 0).
	DefaultPageSize = 50
	// MaxPageSize bounds the ?limit= of the JSON API.
	MaxPageSize = 1000
	// DefaultAttempts is the number of recent attempts shown.
	DefaultAttempts = 50
	// maxBody bounds the body of an unblock request.
	maxBody = 64 << 10
)

// ContentSecurityPolicy is sent with every response of the admin. The pages
// use only their own stylesheet and script (no inline code, no CDN), post
// forms only to themselves and cannot be framed.
const ContentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// AttemptSource is the part of an audit sink that the admin reads; every
// auditlog.Sink is one. Query returns the records matching the filter (IP
// compared exactly, username as auditlog.Filter.Username says: the
// canonical name, or the typed one for records without it), newest first,
// at most Filter.Limit.
type AttemptSource interface {
	Query(ctx context.Context, f auditlog.Filter) ([]auditlog.Record, error)
}

// Options configures the admin handler.
type Options struct {
	// Authorize decides whether a request may use the admin (every page,
	// every API call). Required: New fails without it. See BasicAuth.
	Authorize func(r *http.Request) bool
	// Unauthorized answers requests that Authorize refused. Nil: 401 with
	// a WWW-Authenticate Basic challenge (realm "defender admin").
	Unauthorized http.Handler
	// Attempts, when set, feeds the "recent attempts" table and
	// api/attempts; pass the audit sink (auditlog.Open). Nil: the page says that no audit log is configured.
	Attempts AttemptSource
	// Logger receives one line per unblock and per store error. Nil:
	// slog.Default().
	Logger *slog.Logger
	// PageSize is the number of blocks per HTML page (0: DefaultPageSize).
	PageSize int
	// TrustedOrigins are origins (scheme://host[:port]) besides the
	// admin's own from which unblock POSTs are accepted, for deployments
	// behind a proxy that rewrites Host.
	TrustedOrigins []string
	// Now is the clock used for relative times. Nil: time.Now.
	Now func() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

type handler struct {
	d       *defender.Defender
	lockout *defender.Middleware // answers locked sign-ins
	opts    Options
	log     *slog.Logger
	cop     *http.CrossOriginProtection
	tmpl    *template.Template
	mux     *http.ServeMux
}

// New returns the admin handler for d. It serves, relative to where it is
// mounted (strip the mount prefix with http.StripPrefix):
//
//	GET  /                 the HTML page: blocks (one page) and recent attempts
//	POST /unblock          unblock from the page's forms (303 back to the page)
//	GET  /api/blocks       JSON: {"blocks":[...],"next":"cursor"} (?cursor=&limit=)
//	GET  /api/attempts     JSON: {"attempts":[...]} (?ip=&username=&limit=; username by canonical name)
//	POST /api/unblock      form or JSON: ip | username | pair_ip+pair_username
//	GET  /assets/admin.css the embedded stylesheet and script (exact paths)
//	GET  /assets/admin.js
//
// Every response carries Cache-Control: no-store, ContentSecurityPolicy,
// X-Frame-Options: DENY, X-Content-Type-Options: nosniff and
// Referrer-Policy: same-origin. Every request must pass opts.Authorize.
// Unblocking is POST only (405 otherwise) and refuses cross-origin
// requests (http.CrossOriginProtection: Sec-Fetch-Site, then Origin
// against Host) with 403.
func New(d *defender.Defender, opts Options) (http.Handler, error) {
	if d == nil {
		return nil, ErrNoDefender
	}
	if opts.Authorize == nil {
		return nil, ErrNoAuthorizer
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.PageSize > MaxPageSize {
		opts.PageSize = MaxPageSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &handler{d: d, opts: opts, log: opts.Logger}
	lockout, err := defender.NewMiddleware(d, &defender.MiddlewareOptions{Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	h.lockout = lockout
	if h.log == nil {
		h.log = slog.Default()
	}
	h.cop = http.NewCrossOriginProtection()
	for _, o := range opts.TrustedOrigins {
		if err := h.cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("admin: Options.TrustedOrigins: %w", err)
		}
	}
	h.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusForbidden, "cross-origin request refused")
	}))
	t, err := template.New("admin").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil { // the templates are embedded: only a broken build gets here
		return nil, fmt.Errorf("admin: templates: %w", err)
	}
	h.tmpl = t
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", h.index)
	h.handleAssets(mux)
	mux.HandleFunc("/api/blocks", h.apiBlocks)
	mux.HandleFunc("/api/attempts", h.apiAttempts)
	mux.Handle("/api/unblock", h.postOnly(h.apiUnblock))
	mux.Handle("/unblock", h.postOnly(h.formUnblock))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusNotFound, "not found")
	})
	h.mux = mux
	return h, nil
}

// ServeHTTP sets the security headers, authorizes, then routes.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !h.signIn(w, r) {
		return
	}
	if mountRedirect(w, r) {
		return
	}
	// Mounted with StripPrefix("/x/") the index arrives as "".
	if r.URL.Path == "" || r.URL.Path[0] != '/' {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = "/" + u.Path
		r2.URL = &u
		r = r2
	}
	// No redirect may leave the mount point: a path the mux would clean
	// (and redirect to, losing the prefix StripPrefix removed) is a 404.
	if !cleanPath(r.URL.Path) || !cleanPath(r.URL.EscapedPath()) {
		h.fail(w, r, http.StatusNotFound, "not found")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// signIn authorizes r through the engine, like any login: a request that
// carries credentials (an Authorization header) is an attempt, checked and
// counted before Authorize looks at it and settled by Authorize's answer,
// so that guessing the admin's password is locked out like any login; a
// request without credentials is only checked (a blocked IP is locked out)
// and, when Authorize refuses it, answered 401 without being counted. It
// reports whether r may go on; otherwise it has answered.
func (h *handler) signIn(w http.ResponseWriter, r *http.Request) bool {
	ctx := r.Context()
	l := defender.Login{IP: h.d.ClientIP(r), UserAgent: r.UserAgent(), Path: requestPath(r), Accept: r.Header.Get("Accept")}
	if len(r.Header.Values("Authorization")) == 0 {
		if dec := h.d.Check(ctx, l); !dec.Allowed() {
			h.lockout.ServeLockout(w, r, dec)
			return false
		}
		if !h.opts.Authorize(r) {
			h.unauthorized(w, r)
			return false
		}
		return true
	}
	l.Username, _, _ = r.BasicAuth()
	a := h.d.Attempt(ctx, l)
	if dec := a.Decision(); !dec.Allowed() {
		h.lockout.ServeLockout(w, r, dec)
		return false
	}
	settle := context.WithoutCancel(ctx)
	settled := false
	defer func() {
		if !settled {
			a.Failed(settle) // Authorize panicked
		}
	}()
	ok := h.opts.Authorize(r)
	settled = true
	if ok {
		a.Succeeded(settle)
		return true
	}
	if dec := a.Failed(settle); !dec.Allowed() {
		h.lockout.ServeLockout(w, r, dec)
		return false
	}
	h.unauthorized(w, r)
	return false
}

// unauthorized answers a request Authorize refused.
func (h *handler) unauthorized(w http.ResponseWriter, r *http.Request) {
	if h.opts.Unauthorized != nil {
		h.opts.Unauthorized.ServeHTTP(w, r)
		return
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="defender admin", charset="UTF-8"`)
	h.fail(w, r, http.StatusUnauthorized, "authentication required")
}

// requestPath is the path the client asked for, before any StripPrefix.
func requestPath(r *http.Request) string {
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil && u.Path != "" {
		return u.Path
	}
	return r.URL.Path
}

// postOnly answers 405 with Allow: POST to every other method, then applies
// the cross-origin protection.
func (h *handler) postOnly(f http.HandlerFunc) http.Handler {
	protected := h.cop.Handler(f)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed: use POST")
			return
		}
		protected.ServeHTTP(w, r)
	})
}

// wantsJSON reports whether the answer should be JSON: API paths always,
// other paths when the client asks for it.
func wantsJSON(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// fail writes an error as JSON {"error": msg} or as plain text.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

func (h *handler) storeError(w http.ResponseWriter, r *http.Request, op string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if errors.Is(err, backend.ErrInvalid) || errors.Is(err, defender.ErrBadIdentity) {
		// The request was wrong (a forged cursor, an identity the engine
		// refuses), not the store: no outage alert for it.
		h.fail(w, r, http.StatusBadRequest, op+": "+err.Error())
		return
	}
	h.log.Error("defender admin: store error", "op", op, "err", err)
	h.fail(w, r, http.StatusServiceUnavailable, "store unavailable: "+op+" failed, try again")
}

// limitParam parses ?limit= within 1..max; absent gives def.
func limitParam(r *http.Request, def, max int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("limit must be a positive integer, not %q", s)
	}
	if n > max {
		n = max
	}
	return n, nil
}

// blocksPage is the JSON of api/blocks.
type blocksPage struct {
	Blocks []defender.BlockInfo `json:"blocks"`
	Next   string               `json:"next"`
}

func (h *handler) apiBlocks(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed: use GET")
		return
	}
	limit, err := limitParam(r, 100, MaxPageSize)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	blocks, next, err := h.d.Blocks(r.Context(), r.URL.Query().Get("cursor"), limit)
	if err != nil {
		h.storeError(w, r, "list blocks", err)
		return
	}
	if blocks == nil {
		blocks = []defender.BlockInfo{}
	}
	writeJSON(w, http.StatusOK, blocksPage{Blocks: blocks, Next: next})
}

// target is one identity to unblock.
type target struct {
	Kind     defender.Kind `json:"kind"`
	IP       string        `json:"ip,omitempty"`
	Username string        `json:"username,omitempty"`
}

// unblockRequest is the JSON body of api/unblock.
type unblockRequest struct {
	IP           *string `json:"ip"`
	Username     *string `json:"username"`
	PairIP       *string `json:"pair_ip"`
	PairUsername *string `json:"pair_username"`
}

var errBadRequest = errors.New("give exactly one of ip, username, or pair_ip with pair_username")

// parseTarget reads the identity from a JSON or form body.
func parseTarget(w http.ResponseWriter, r *http.Request) (target, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var req unblockRequest
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&req); err != nil {
			return target{}, fmt.Errorf("bad JSON body: %v", err)
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		if err := r.ParseMultipartForm(maxBody); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			return target{}, fmt.Errorf("bad form body: %v", err)
		}
		get := func(name string) *string {
			if vs, ok := r.PostForm[name]; ok && len(vs) > 0 {
				return &vs[0]
			}
			return nil
		}
		req = unblockRequest{IP: get("ip"), Username: get("username"), PairIP: get("pair_ip"), PairUsername: get("pair_username")}
	default:
		return target{}, fmt.Errorf("send application/json or a form, not %q", r.Header.Get("Content-Type"))
	}
	n := 0
	var t target
	if req.IP != nil {
		n++
		t = target{Kind: defender.KindIP, IP: *req.IP}
	}
	if req.Username != nil {
		n++
		t = target{Kind: defender.KindUsername, Username: *req.Username}
	}
	if req.PairIP != nil || req.PairUsername != nil {
		n++
		if req.PairIP == nil || req.PairUsername == nil {
			return target{}, errBadRequest
		}
		t = target{Kind: defender.KindPair, IP: *req.PairIP, Username: *req.PairUsername}
	}
	if n != 1 {
		return target{}, errBadRequest
	}
	t.IP = strings.TrimSpace(t.IP)
	if t.Kind != defender.KindUsername && !validIP(t.IP) {
		return target{}, fmt.Errorf("%q is not an IP address or prefix", t.IP)
	}
	if t.Kind != defender.KindIP && strings.TrimSpace(t.Username) == "" {
		return target{}, errors.New("the username is empty")
	}
	return t, nil
}

// unblock performs t and logs it.
func (h *handler) unblock(ctx context.Context, r *http.Request, t target) (bool, error) {
	var ok bool
	var err error
	switch t.Kind {
	case defender.KindIP:
		ok, err = h.d.UnblockIP(ctx, t.IP)
	case defender.KindUsername:
		ok, err = h.d.UnblockUsername(ctx, t.Username)
	default:
		ok, err = h.d.UnblockPair(ctx, t.IP, t.Username)
	}
	if err == nil {
		h.log.Info("defender admin: unblock", "kind", string(t.Kind), "ip", t.IP, "username", t.Username,
			"was_blocked", ok, "remote", r.RemoteAddr)
	}
	return ok, err
}

// validIP reports whether s is an IP address or an IP prefix (the two
// forms in which blocks list IPs).
func validIP(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}

// unblockResult is the JSON answer of api/unblock.
type unblockResult struct {
	target
	Unblocked bool `json:"unblocked"`
}

func (h *handler) apiUnblock(w http.ResponseWriter, r *http.Request) {
	t, err := parseTarget(w, r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ok, err := h.unblock(r.Context(), r, t)
	if err != nil {
		h.storeError(w, r, "unblock", err)
		return
	}
	writeJSON(w, http.StatusOK, unblockResult{target: t, Unblocked: ok})
}

// formUnblock serves the page's unblock buttons: it unblocks, then sends the
// browser back to the page with a note of what happened (303, so a reload
// does not post again).
func (h *handler) formUnblock(w http.ResponseWriter, r *http.Request) {
	t, err := parseTarget(w, r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ok, err := h.unblock(r.Context(), r, t)
	if err != nil {
		h.storeError(w, r, "unblock", err)
		return
	}
	q := url.Values{}
	q.Set("done", string(t.Kind))
	if t.IP != "" {
		q.Set("fip", t.IP)
	}
	if t.Username != "" {
		q.Set("fuser", t.Username)
	}
	if !ok {
		q.Set("none", "1")
	}
	// A relative Location: http.Redirect would resolve it against the
	// stripped path and lose the mount prefix.
	w.Header().Set("Location", "./?"+q.Encode())
	w.WriteHeader(http.StatusSeeOther)
}
