package defender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
)

// DefaultMaxBodyBytes is the default bound on the login request body the
// middleware reads to find the username (MiddlewareOptions.MaxBodyBytes).
const DefaultMaxBodyBytes = 64 << 10

// ErrMiddlewareOptions is wrapped by NewMiddleware's errors about its
// MiddlewareOptions. (A lockout template that cannot be read or parsed is
// an ErrConfig naming DEFENDER_LOCKOUT_TEMPLATE.)
var ErrMiddlewareOptions = errors.New("defender: invalid middleware setting")

// MiddlewareOptions tunes the HTTP middleware. The zero value (or nil) is
// valid: the username comes from Config.UsernameFormField, a POST answered
// without a redirect is a failure, and bodies are read up to
// DefaultMaxBodyBytes.
type MiddlewareOptions struct {
	// UsernameField overrides Config.UsernameFormField (DEFENDER_USERNAME_FORM_FIELD):
	// the form field, or top-level JSON member, holding the username. For a
	// password-reset form it is typically "email".
	UsernameField string

	// GetUsername, when set, names the identity of a request instead of
	// UsernameField (django-defender's GET_USERNAME_FROM_REQUEST_PATH). It is
	// called for every request, after a POST body has been read within
	// MaxBodyBytes: form values are parsed (r.FormValue works) and a JSON
	// body can be read again from r.Body. Return "" for no username.
	GetUsername func(r *http.Request) string

	// MaxBodyBytes bounds the body of a POST the middleware reads to find the
	// username (0: DefaultMaxBodyBytes). A larger form or JSON body is not
	// read past the bound: the request is counted as a failed attempt for
	// its IP and answered 413 (or the lockout response) without calling the
	// handler.
	MaxBodyBytes int64

	// FailureStatus, when set, says a POST failed exactly when the handler's
	// status is in the list or is a server error (5xx: a broken login never
	// resets counters). Mutually exclusive with IsFailure.
	FailureStatus []int

	// IsFailure, when set, decides whether a POST failed from the handler's
	// status and response header, at the moment the handler writes its
	// header. Mutually exclusive with FailureStatus.
	IsFailure func(status int, header http.Header) bool

	// Logger receives the middleware's logs (lockouts, fail-mode answers).
	// Nil: the Defender's Options.Logger, else slog.Default().
	Logger *slog.Logger
}

// Middleware protects login handlers of any net/http router, the way
// django-defender's watch_login does, without the handler's cooperation:
// it checks every request against the blocks, counts every POST as a
// login attempt before the handler verifies the password, classifies the
// handler's answer as success or failure, and answers locked clients with
// the lockout response. Create it with NewMiddleware; it is safe for
// concurrent use.
type Middleware struct {
	d           *Defender
	field       string
	getUsername func(*http.Request) string
	maxBody     int64
	failStatus  []int
	isFailure   func(int, http.Header) bool
	log         *slog.Logger
	page        lockoutPage
	fieldCanon  string // CanonicalUsername(field)
}

// NewMiddleware returns the middleware of d. It parses the lockout template
// (Config.LockoutTemplate) once, here. Errors wrap ErrMiddlewareOptions (a
// bad option) or ErrConfig (the template), and name the setting.
func NewMiddleware(d *Defender, opts *MiddlewareOptions) (*Middleware, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil *Defender", ErrMiddlewareOptions)
	}
	var o MiddlewareOptions
	if opts != nil {
		o = *opts
	}
	cfg := d.Config()
	m := &Middleware{
		d:           d,
		field:       o.UsernameField,
		getUsername: o.GetUsername,
		maxBody:     o.MaxBodyBytes,
		isFailure:   o.IsFailure,
		log:         o.Logger,
	}
	if m.field == "" {
		m.field = cfg.UsernameFormField // validated: not empty
	}
	m.fieldCanon = CanonicalUsername(m.field)
	switch {
	case m.maxBody < 0:
		return nil, fmt.Errorf("%w: MaxBodyBytes %d is negative", ErrMiddlewareOptions, m.maxBody)
	case m.maxBody == 0:
		m.maxBody = DefaultMaxBodyBytes
	}
	if len(o.FailureStatus) > 0 && o.IsFailure != nil {
		return nil, fmt.Errorf("%w: set FailureStatus or IsFailure, not both", ErrMiddlewareOptions)
	}
	for _, s := range o.FailureStatus {
		if s < 100 || s > 599 {
			return nil, fmt.Errorf("%w: FailureStatus %d is not an HTTP status", ErrMiddlewareOptions, s)
		}
	}
	m.failStatus = append([]int(nil), o.FailureStatus...)
	if m.log == nil {
		m.log = d.log // never nil
	}
	page, err := newLockoutPage(cfg)
	if err != nil {
		return nil, err
	}
	m.page = page
	return m, nil
}

// Wrap returns next protected by m. GET, HEAD and OPTIONS requests are
// checked (a blocked client gets the lockout response and next is not
// called) but never counted. Every other request (POST, and PUT, PATCH,
// DELETE or any method a handler might authenticate on) is a login
// attempt: its username is read once (see LoginFrom and
// ErrAmbiguousLogin), it is checked and counted before next runs, next
// verifies the password of the username LoginFrom gives it, and its answer
// is classified when it writes its header (or returns):
//
//   - an explicit ReportSuccess or ReportFailure from next wins;
//   - else IsFailure, or FailureStatus, when set;
//   - else a redirect (a 3xx status with a Location header) is a success
//     and anything else is a failure.
//
// A failure that blocks the client replaces next's answer with the lockout
// response (failures 1..limit get next's "wrong password" answer, failure
// limit+1 the lockout page). A panic in next settles the attempt as a
// failure and propagates. A request refused before next runs (locked,
// store unavailable, ambiguous, too large, shed) carries the header
// X-Defender-Reason naming why. Wrap has the shape of a router's
// middleware (func(http.Handler) http.Handler), for chi's Use and With.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	if next == nil {
		panic("defender: Middleware.Wrap(nil)")
	}
	return &protected{m: m, next: next}
}

type protected struct {
	m    *Middleware
	next http.Handler
}

func (p *protected) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := p.m
	ctx := r.Context()
	if !isAttemptMethod(r.Method) {
		l := m.login(r, "")
		if m.getUsername != nil {
			l.Username = m.getUsername(r)
		}
		dec := m.d.Check(ctx, l)
		if !dec.Allowed() {
			m.refuse(w, r, dec, l)
			return
		}
		p.next.ServeHTTP(w, r)
		return
	}

	read := m.readLogin(w, r)
	l := m.login(r, read.username)
	switch {
	case read.gone || ctx.Err() != nil:
		m.refuse(w, r, Decision{Verdict: Abandoned, Err: context.Cause(ctx)}, l)
		return
	case read.refused != nil:
		m.refuse(w, r, m.d.Refuse(ctx, l, read.refused), l)
		return
	case read.tooLarge:
		l.Username = ""
		if dec := m.d.Refuse(ctx, l, errBodyTooLarge); dec.Verdict != Refused {
			m.refuse(w, r, dec, l)
			return
		}
		m.tooLarge(w, r)
		return
	}
	var a Attempt
	m.d.AttemptInto(ctx, l, &a)
	if dec := a.Decision(); !dec.Allowed() {
		m.refuse(w, r, dec, l)
		return
	}
	release, ok := a.Admit(ctx)
	if !ok {
		m.refuse(w, r, a.Decision(), l)
		return
	}
	defer release()
	read.apply(r, m.field)
	settle := context.WithoutCancel(ctx)
	ww := &watchWriter{w: w, m: m, r: r, l: l, ctx: settle,
		info: LoginInfo{Username: TrimUsername(l.Username), Canonical: a.Username()}}
	a.moveTo(&ww.a)
	r = r.WithContext(context.WithValue(ctx, reportKey{}, ww))
	ww.r = r
	returned := false
	defer func() {
		// A panic (or runtime.Goexit) in next: settle as a failure, the
		// reservation stays counted; the panic goes on unchanged.
		if !returned && ww.state.Load() == statePending {
			ww.state.Store(statePassing)
			ww.a.Failed(settle)
		}
	}()
	p.next.ServeHTTP(ww, r)
	returned = true
	ww.finish()
}

// errBodyTooLarge is the reason recorded for a body past MaxBodyBytes.
var errBodyTooLarge = errors.New("defender: login request body too large")

// errShed is the reason recorded for a password check shed by admission
// control.
var errShed = errors.New("defender: password check shed: too many running")

// login builds the Login of r with the given username.
func (m *Middleware) login(r *http.Request, username string) Login {
	return Login{
		IP:        m.d.ClientIP(r),
		Username:  username,
		UserAgent: r.UserAgent(),
		Path:      r.URL.Path,
		Accept:    r.Header.Get("Accept"),
	}
}

// mediaType returns the media type of a Content-Type value, lower-cased,
// without parameters (mime.ParseMediaType without its allocations).
func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimSpace(v)
	for i := 0; i < len(v); i++ {
		if c := v[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(v)
		}
	}
	return v
}

// isJSONType reports a JSON media type: application/json or
// application/*+json.
func isJSONType(ct string) bool {
	return ct == "application/json" || (strings.HasPrefix(ct, "application/") && strings.HasSuffix(ct, "+json"))
}

// classify reports whether a POST answered with status and header failed,
// by the heuristics (the explicit report is looked at by the caller).
func (m *Middleware) classify(status int, header http.Header) bool {
	switch {
	case m.isFailure != nil:
		return m.isFailure(status, header)
	case len(m.failStatus) > 0:
		if status >= 500 {
			return true
		}
		for _, s := range m.failStatus {
			if s == status {
				return true
			}
		}
		return false
	default:
		return !(status >= 300 && status < 400 && header.Get("Location") != "")
	}
}

// tooLarge answers a POST whose body passed the bound.
func (m *Middleware) tooLarge(w http.ResponseWriter, r *http.Request) {
	m.plain(w, r, http.StatusRequestEntityTooLarge, "refused", "request_too_large", "The request body is too large.")
}

// Report values.
const (
	reportNone int32 = iota
	reportSuccess
	reportFailure
)

type reportKey struct{}

// ReportSuccess tells the middleware protecting r that the login succeeded,
// overriding its heuristics. r may be the request the handler received or
// any request derived from it. It must be called before the handler writes
// its response header; it reports whether the report was taken (false when
// r is not a POST under Middleware.Wrap, or the answer was already
// classified).
func ReportSuccess(r *http.Request) bool { return report(r, reportSuccess) }

// ReportFailure tells the middleware protecting r that the login failed,
// overriding its heuristics; see ReportSuccess. A failure that blocks the
// client replaces the handler's answer with the lockout response.
func ReportFailure(r *http.Request) bool { return report(r, reportFailure) }

func report(r *http.Request, v int32) bool {
	ww, ok := r.Context().Value(reportKey{}).(*watchWriter)
	if !ok || ww.state.Load() != statePending {
		return false
	}
	ww.report.Store(v)
	return true
}

// watchWriter states.
const (
	statePending  int32 = iota // nothing written, attempt not settled
	statePassing               // settled; the handler's answer goes through
	stateReplaced              // settled as a lockout; the handler's answer is dropped
)

// watchWriter settles the attempt when the handler commits its status, and
// replaces the handler's answer by the lockout response when that failure
// blocked the client. It buffers nothing.
type watchWriter struct {
	w      http.ResponseWriter
	m      *Middleware
	r      *http.Request
	a      Attempt
	l      Login
	ctx    context.Context
	info   LoginInfo
	state  atomic.Int32
	report atomic.Int32
}

// Header returns the underlying header map.
func (ww *watchWriter) Header() http.Header { return ww.w.Header() }

// WriteHeader settles the attempt on the first final status.
func (ww *watchWriter) WriteHeader(code int) {
	switch ww.state.Load() {
	case statePassing:
		ww.w.WriteHeader(code)
		return
	case stateReplaced:
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		ww.w.WriteHeader(code) // informational: not the answer yet
		return
	}
	if ww.settle(code) {
		ww.w.WriteHeader(code)
	}
}

// Write writes through, settling first (as status 200) when nothing was
// written; after a lockout it drops p, reporting success to the handler.
func (ww *watchWriter) Write(p []byte) (int, error) {
	if ww.state.Load() == statePending {
		ww.WriteHeader(http.StatusOK)
	}
	if ww.state.Load() == stateReplaced {
		return len(p), nil
	}
	return ww.w.Write(p)
}

// FlushError commits the answer (as status 200 when the handler wrote
// nothing) and flushes the underlying writer, for http.ResponseController.
func (ww *watchWriter) FlushError() error {
	if ww.state.Load() == statePending {
		ww.WriteHeader(http.StatusOK)
	}
	if ww.state.Load() == stateReplaced {
		return nil
	}
	return http.NewResponseController(ww.w).Flush()
}

// Flush is FlushError without the error, for http.Flusher.
func (ww *watchWriter) Flush() { _ = ww.FlushError() }

// Unwrap returns the underlying writer, for http.ResponseController.
func (ww *watchWriter) Unwrap() http.ResponseWriter { return ww.w }

// finish settles an attempt whose handler returned without writing.
func (ww *watchWriter) finish() {
	if ww.state.Load() == statePending {
		ww.settle(http.StatusOK)
	}
}

// settle classifies the answer and settles the attempt. It reports whether
// the handler's answer goes through; when it does not, the lockout response
// has been written.
func (ww *watchWriter) settle(status int) bool {
	var failed bool
	switch ww.report.Load() {
	case reportSuccess:
		failed = false
	case reportFailure:
		failed = true
	default:
		failed = ww.m.classify(status, ww.w.Header())
	}
	if !failed {
		ww.state.Store(statePassing)
		ww.a.Succeeded(ww.ctx)
		return true
	}
	dec := ww.a.Failed(ww.ctx)
	if dec.Verdict != Locked {
		ww.state.Store(statePassing)
		return true
	}
	ww.state.Store(stateReplaced)
	h := ww.w.Header()
	for k := range h {
		delete(h, k) // the handler's cookies and Location must not leak
	}
	ww.m.refuse(ww.w, ww.r, dec, ww.l)
	return false
}
