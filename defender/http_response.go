package defender

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// builtinLockout is the lockout page used when Config.LockoutTemplate is
// empty. It receives the same data as a custom template.
const builtinLockout = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Account locked</title>
<style>
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#f3f4f6;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937}
main{background:#fff;max-width:28rem;margin:1rem;padding:2rem 2.25rem;border-radius:12px;
box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06);border-top:4px solid #b91c1c}
h1{margin:0 0 .75rem;font-size:1.4rem;color:#b91c1c}
p{margin:.5rem 0}.when{font-size:1.1rem;font-weight:600}.small{color:#6b7280;font-size:.9rem}
</style></head>
<body><main><h1>Account locked</h1>
<p>Account locked: too many login attempts.</p>
{{if .permanent}}<p class="when">Contact an admin to unlock your account.</p>
{{else}}<p class="when">Please try again in {{if ge .seconds_remaining 120}}{{.minutes_remaining}} minutes{{else}}{{.seconds_remaining}} seconds{{end}}.</p>
{{end}}<p class="small">Failed logins are limited to protect your account. Attempts made while it is locked are not counted and do not extend the lock.</p>
</main></body></html>
`

var builtinTemplate = template.Must(template.New("lockout").Parse(builtinLockout))

// lockoutPage renders lockout responses for one Config.
type lockoutPage struct {
	tmpl         *template.Template
	url          string
	status       int
	failureLimit int
	cooloffs     []time.Duration
	rendered     *renderCache
}

// renderCache keeps lockout bodies already rendered: a body depends only on
// the seconds remaining, the cooloff and permanence, so under a flood on
// one blocked client every request but the first of each second is a copy.
// It is bounded: past maxRendered bodies it starts afresh.
type renderCache struct {
	m atomic.Pointer[sync.Map]
	n atomic.Int64
}

const maxRendered = 512

// renderKey names one rendered body.
type renderKey struct {
	json      bool
	permanent bool
	secs      int64
	cooloff   time.Duration
}

func (c *renderCache) get(k renderKey) ([]byte, bool) {
	if m := c.m.Load(); m != nil {
		if v, ok := m.Load(k); ok {
			return v.([]byte), true
		}
	}
	return nil, false
}

func (c *renderCache) put(k renderKey, b []byte) {
	m := c.m.Load()
	if m == nil || c.n.Add(1) > maxRendered {
		m = new(sync.Map)
		c.m.Store(m)
		c.n.Store(1)
	}
	m.Store(k, b)
}

func newLockoutPage(cfg Config) (lockoutPage, error) {
	p := lockoutPage{
		url:          cfg.LockoutURL,
		status:       cfg.LockoutStatus, // validated: 4xx or 5xx
		failureLimit: cfg.FailureLimit,
		cooloffs:     cfg.lockoutTimes(),
		rendered:     new(renderCache),
	}
	var err error
	if cfg.LockoutTemplate != "" {
		p.tmpl, err = ParseLockoutTemplate(cfg.LockoutTemplate)
	} else {
		p.tmpl = builtinTemplate
	}
	return p, err
}

// ParseLockoutTemplate parses the html/template file path
// (DEFENDER_LOCKOUT_TEMPLATE), as NewMiddleware does; the error wraps
// ErrConfig and the parse error, and names the setting. The template is executed with
// a map holding cooloff_time_seconds (int64: the block's duration, 0 when
// permanent), cooloff_time_minutes (float64), failure_limit (int),
// seconds_remaining (int64, rounded up; 0 when permanent) and permanent
// (bool): write {{.seconds_remaining}} where Django writes
// {{ seconds_remaining }}.
func ParseLockoutTemplate(path string) (*template.Template, error) {
	t, err := template.ParseFiles(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %q: %w", ErrConfig, envLockoutTemplate, path, err)
	}
	return t, nil
}

// data is the template context of a lockout decision.
func (p *lockoutPage) data(dec Decision) map[string]any {
	cooloff := p.cooloff(dec)
	return map[string]any{
		"cooloff_time_seconds": ceilSeconds(cooloff),
		"cooloff_time_minutes": cooloff.Minutes(),
		"failure_limit":        p.failureLimit,
		"seconds_remaining":    secondsRemaining(dec),
		"minutes_remaining":    (secondsRemaining(dec) + 59) / 60,
		"permanent":            dec.Permanent,
	}
}

// cooloff is the duration of the block behind dec: 0 for a permanent block,
// dec.Duration when the engine knows it, else the shortest configured lockout duration that covers the time
// remaining (the escalation list only grows in practice), else the longest.
func (p *lockoutPage) cooloff(dec Decision) time.Duration {
	if dec.Permanent {
		return 0
	}
	if dec.Duration > 0 {
		return dec.Duration
	}
	var best, longest time.Duration
	for _, c := range p.cooloffs {
		if c > longest {
			longest = c
		}
		if c > 0 && c >= dec.RetryAfter && (best == 0 || c < best) {
			best = c
		}
	}
	if best == 0 {
		best = longest
	}
	return best
}

// secondsRemaining is dec.RetryAfter in whole seconds, rounded up, at least
// 1 for a temporary block; 0 for a permanent one.
func secondsRemaining(dec Decision) int64 {
	if dec.Permanent {
		return 0
	}
	s := ceilSeconds(dec.RetryAfter)
	if s < 1 {
		s = 1
	}
	return s
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// ServeLockout writes the answer to a request whose Decision is not
// Allowed, as Wrap does; use it when calling the Attempt API directly.
//
// Locked: a JSON client (see below) gets a JSON body
// {"error":"locked","message":…,"retry_after":N,"permanent":B} with
// Config.LockoutStatus (429); else with Config.LockoutURL set, a redirect
// there (302 for GET and HEAD, 303 otherwise); else the lockout page with
// Config.LockoutStatus. Retry-After carries the seconds remaining, rounded
// up, except for a permanent block. The answer depends only on dec, never on
// whether the account exists. Unavailable (the store is down and the fail
// mode is closed): 503, never a 500. Every answer is Cache-Control: no-store.
// An Allowed dec writes nothing.
//
// A client wants JSON when its Accept header ranks application/json (or an
// application/*+json type) above text/html, or when it sends no such
// preference and its request body is JSON.
func (m *Middleware) ServeLockout(w http.ResponseWriter, r *http.Request, dec Decision) {
	m.refuse(w, r, dec, Login{IP: m.d.ClientIP(r), Path: r.URL.Path})
}

// refuse is ServeLockout with the request's Login, for the log.
func (m *Middleware) refuse(w http.ResponseWriter, r *http.Request, dec Decision, l Login) {
	h := w.Header()
	switch dec.Verdict {
	case Allow:
		return
	case Abandoned:
		// The client is gone: nobody reads this; 499 as nginx logs it.
		h.Set(ReasonHeader, "abandoned")
		w.WriteHeader(499)
		return
	case Unavailable:
		m.log.LogAttrs(r.Context(), slog.LevelWarn, "defender: store unavailable, login refused",
			slog.String("ip", l.IP.String()), slog.String("path", l.Path),
			slog.String("fail_mode", string(dec.FailMode)), slog.Any("error", dec.Err))
		m.plain(w, r, http.StatusServiceUnavailable, "unavailable", "unavailable",
			"Login is temporarily unavailable. Please try again later.")
		return
	case Shed:
		h.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(dec.RetryAfter)), 10))
		m.plain(w, r, http.StatusServiceUnavailable, "shed", "overloaded",
			"Too many logins are being checked right now. Please try again in a moment.")
		return
	case Refused:
		m.log.LogAttrs(r.Context(), slog.LevelInfo, "defender: login request refused",
			slog.String("ip", l.IP.String()), slog.String("path", l.Path), slog.Any("reason", dec.Err))
		msg := "The login request is ambiguous or malformed."
		if errors.Is(dec.Err, ErrUsernameTooLong) {
			msg = "The username is too long."
		}
		m.plain(w, r, http.StatusBadRequest, "refused", "bad_request", msg)
		return
	}

	// Debug: the block itself is logged once, at Info, by the engine; a
	// flood of refused requests must not flood the log.
	if m.log.Enabled(r.Context(), slog.LevelDebug) {
		m.log.LogAttrs(r.Context(), slog.LevelDebug, "defender: locked",
			slog.String("ip", l.IP.String()), slog.String("username", l.Username),
			slog.String("kind", string(dec.Kind)), slog.Bool("permanent", dec.Permanent),
			slog.Int64("seconds_remaining", secondsRemaining(dec)), slog.String("path", l.Path))
	}
	p := &m.page
	h.Set("Cache-Control", "no-store")
	h.Set(ReasonHeader, "locked")
	retry := secondsRemaining(dec)
	isJSON := wantsJSON(r)
	if !dec.Permanent {
		h.Set("Retry-After", strconv.FormatInt(retry, 10))
	}
	if !isJSON && p.url != "" {
		code := http.StatusSeeOther
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = http.StatusFound
		}
		h.Del("Retry-After")
		h.Set("Location", p.url)
		w.WriteHeader(code)
		return
	}
	key := renderKey{json: isJSON, permanent: dec.Permanent, secs: retry, cooloff: p.cooloff(dec)}
	body, ok := p.rendered.get(key)
	if !ok {
		body = p.render(r, m.log, key, dec)
		p.rendered.put(key, body)
	}
	if isJSON {
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
	} else {
		h.Set("Content-Type", "text/html; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// render makes the body of a lockout response.
func (p *lockoutPage) render(r *http.Request, log *slog.Logger, key renderKey, dec Decision) []byte {
	if key.json {
		msg := "Too many login attempts. Please try again later."
		if dec.Permanent {
			msg = "Too many login attempts. Contact an admin to unlock your account."
		}
		b, _ := json.Marshal(map[string]any{
			"error":       "locked",
			"message":     msg,
			"retry_after": key.secs,
			"permanent":   dec.Permanent,
		})
		return append(b, '\n')
	}
	var buf bytes.Buffer
	if err := p.tmpl.Execute(&buf, p.data(dec)); err != nil {
		log.LogAttrs(r.Context(), slog.LevelError, "defender: lockout template failed; built-in page served",
			slog.String("template", p.tmpl.Name()), slog.Any("error", err))
		buf.Reset()
		_ = builtinTemplate.Execute(&buf, p.data(dec))
	}
	return buf.Bytes()
}

// ReasonHeader is the response header that names why defender answered a
// request itself instead of the handler: "locked", "unavailable" (the
// store is down, fail mode closed), "shed" (admission control), "refused"
// (an ambiguous or malformed login) or "abandoned". Load tests and proxies
// can tell these apart; it never says whether an account exists.
const ReasonHeader = "X-Defender-Reason"

// plain answers a refusal that is not a lockout: JSON ({"error":code,
// "message":msg}) for JSON clients, text otherwise; no-store, with
// ReasonHeader set to reason.
func (m *Middleware) plain(w http.ResponseWriter, r *http.Request, status int, reason, code, msg string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set(ReasonHeader, reason)
	if wantsJSON(r) {
		writeJSON(w, status, map[string]any{"error": code, "message": msg})
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// writeJSON writes v as the JSON body of a response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Bounds on Accept parsing: a hostile header costs at most this much.
const (
	maxAcceptLen   = 1024
	maxAcceptItems = 32
)

// wantsJSON reports whether r's client prefers a JSON answer: its Accept
// header ranks a JSON type above HTML, or (when Accept says nothing about
// either) its body is JSON.
func wantsJSON(r *http.Request) bool {
	jsonQ, htmlQ := acceptQ(r.Header.Values("Accept"))
	if jsonQ > 0 || htmlQ > 0 {
		return jsonQ > htmlQ
	}
	return isJSONType(mediaType(r.Header.Get("Content-Type")))
}

// acceptQ returns the best quality given to a JSON type and to an HTML type
// by explicit (non-wildcard) media ranges of the Accept header lines, read
// within maxAcceptLen bytes and maxAcceptItems items.
func acceptQ(lines []string) (jsonQ, htmlQ float64) {
	budget, items := maxAcceptLen, 0
	for _, line := range lines {
		if len(line) > budget {
			line = line[:budget]
		}
		budget -= len(line)
		for line != "" && items < maxAcceptItems {
			var item string
			item, line, _ = strings.Cut(line, ",")
			items++
			typ, params, _ := strings.Cut(item, ";")
			typ = strings.ToLower(strings.TrimSpace(typ))
			q := 1.0
			for params != "" {
				var p string
				p, params, _ = strings.Cut(params, ";")
				k, v, _ := strings.Cut(p, "=")
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					if err != nil || f < 0 || f > 1 {
						f = 0
					}
					q = f
				}
			}
			switch {
			case isJSONType(typ):
				jsonQ = max(jsonQ, q)
			case typ == "text/html" || typ == "application/xhtml+xml":
				htmlQ = max(htmlQ, q)
			}
		}
		if budget <= 0 || items >= maxAcceptItems {
			break
		}
	}
	return jsonQ, htmlQ
}
