package defender

import (
	"context"
	"net/http"
	"strconv"
)

// BasicVerifier checks HTTP Basic credentials: it reports whether password
// is right for username, which is in canonical form (CanonicalUsername, then
// the Resolver). It must not log or keep the password.
type BasicVerifier func(ctx context.Context, username, password string) bool

// BasicAuth returns middleware for an API authenticated by HTTP Basic
// credentials on every request (django-defender's BasicAuthenticationDefender
// recipe for Django REST framework). Every request that carries credentials,
// whatever its method, is a login attempt: checked, counted before verify
// runs, then settled by verify's answer. A right password calls next; a
// wrong one answers 401 with WWW-Authenticate (JSON or text, see
// ServeLockout for the choice), or the lockout response when that failure
// blocked the client. A request without credentials is checked (a blocked
// IP is locked out) but not counted, and answered 401. verify runs only for
// an allowed attempt; a panic in it settles the attempt as failed and
// propagates. realm may be empty ("restricted"). verify receives the
// canonical username (Defender.Canonical of the one sent, the identity that
// is counted), so that the account it checks is the one counted; next finds
// the authenticated username with LoginFrom. A request with several
// Authorization headers is refused (ErrAmbiguousLogin).
func (m *Middleware) BasicAuth(realm string, verify BasicVerifier) func(http.Handler) http.Handler {
	if verify == nil {
		panic("defender: Middleware.BasicAuth with a nil verifier")
	}
	if realm == "" {
		realm = "restricted"
	}
	challenge := `Basic realm=` + strconv.Quote(realm) + `, charset="UTF-8"`
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			if len(r.Header.Values("Authorization")) > 1 {
				l := m.login(r, "")
				m.refuse(w, r, m.d.Refuse(ctx, l, ambiguous("several Authorization headers")), l)
				return
			}
			username, password, ok := r.BasicAuth()
			if !ok {
				l := m.login(r, "")
				if dec := m.d.Check(ctx, l); !dec.Allowed() {
					m.refuse(w, r, dec, l)
					return
				}
				unauthorized(w, r, challenge)
				return
			}
			l := m.login(r, username)
			a := m.d.Attempt(ctx, l)
			if dec := a.Decision(); !dec.Allowed() {
				m.refuse(w, r, dec, l)
				return
			}
			release, admitted := a.Admit(ctx)
			if !admitted {
				m.refuse(w, r, a.Decision(), l)
				return
			}
			defer release()
			settle := context.WithoutCancel(ctx)
			settled := false
			defer func() {
				if !settled {
					a.Failed(settle) // verify panicked
				}
			}()
			good := verify(ctx, a.Username(), password)
			settled = true
			if good {
				a.Succeeded(settle)
				info := &LoginInfo{Username: TrimUsername(username), Canonical: a.Username()}
				next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, reportKey{}, info)))
				return
			}
			if dec := a.Failed(settle); dec.Verdict == Locked {
				m.refuse(w, r, dec, l)
				return
			}
			unauthorized(w, r, challenge)
		})
	}
}

// unauthorized answers 401 with a Basic challenge.
func unauthorized(w http.ResponseWriter, r *http.Request, challenge string) {
	h := w.Header()
	h.Set("WWW-Authenticate", challenge)
	h.Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error":   "unauthorized",
			"message": "Invalid username or password.",
		})
		return
	}
	http.Error(w, "Invalid username or password.", http.StatusUnauthorized)
}

// UsernameFromBasicAuth returns the username of r's HTTP Basic credentials,
// or "". Use it as MiddlewareOptions.GetUsername for a token endpoint that
// takes Basic credentials on a POST.
func UsernameFromBasicAuth(r *http.Request) string {
	u, _, _ := r.BasicAuth()
	return u
}
