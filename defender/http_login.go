package defender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrAmbiguousLogin is the reason (Decision.Err) of a login the middleware
// refused because it cannot tell for certain which username the request
// names: the username field given more than once (in the query and the
// body, or twice in one), a field name that differs from the configured one
// only in case or width (as encoding/json would still match), a username
// that is not a string (a JSON number, object or null, a file part), a
// body that is malformed or of a media type the middleware does not read,
// or several Content-Type or Authorization headers. Such a request is
// answered 400 without calling the handler, and counted as a failure of
// its IP (Defender.Refuse).
var ErrAmbiguousLogin = errors.New("defender: ambiguous login request")

// LoginInfo is the login the middleware read from a request, counted and
// handed to the handler (see LoginFrom). It never holds the password.
type LoginInfo struct {
	// Username is the username as sent, with surrounding white space
	// trimmed; "" when the request names none.
	Username string
	// Canonical is the identity the attempt is counted under
	// (Defender.Canonical of Username): the application must look the user
	// up by this form, so that the name it authenticates is exactly the
	// name that is counted.
	Canonical string
}

// LoginFrom returns the login that the Middleware protecting r read from r,
// counted, and lets the handler verify. ok is false when r is not a login
// attempt passing through Middleware.Wrap or Middleware.BasicAuth (a GET,
// or a handler not behind the middleware).
//
// A login handler must take the username from here and never parse it from
// the request again: the middleware refuses requests whose username is
// ambiguous, but only the LoginInfo is guaranteed to be the identity that
// was counted. Look the user up by LoginInfo.Canonical. The password is
// read by the handler as usual (for a form, r.PostFormValue; for JSON, the
// body, which the middleware restores).
func LoginFrom(r *http.Request) (LoginInfo, bool) {
	return LoginFromContext(r.Context())
}

// LoginFromContext is LoginFrom for the context of the request.
func LoginFromContext(ctx context.Context) (LoginInfo, bool) {
	switch v := ctx.Value(reportKey{}).(type) {
	case *watchWriter:
		return v.info, true
	case *LoginInfo:
		return *v, true
	}
	return LoginInfo{}, false
}

// isAttemptMethod reports the methods that are login attempts: every
// method that may carry credentials to a handler, that is all but GET,
// HEAD and OPTIONS. (A handler that authenticates on PUT must not get
// uncounted guesses.)
func isAttemptMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// loginRead is the outcome of reading a login request.
type loginRead struct {
	username string
	tooLarge bool  // the body passed MaxBodyBytes
	gone     bool  // the body ended early: the client went away
	refused  error // ErrAmbiguousLogin, wrapped with the detail

	// What apply sets as r.PostForm and r.Form.
	post, query url.Values
	setForm     bool
}

func ambiguous(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrAmbiguousLogin, fmt.Sprintf(format, args...))
}

// readLogin reads the username of a login request within m.maxBody. With
// GetUsername it parses forms and restores a JSON body, then asks
// GetUsername. Otherwise the username field must appear at most once in
// the query string and the body together, under exactly the configured
// name, as a string; anything else is refused. On return the request is
// left so that the handler's own reading agrees with what was read: r.Form
// and r.PostForm hold the parsed values, and a JSON or form body can be
// read again from r.Body.
func (m *Middleware) readLogin(w http.ResponseWriter, r *http.Request) loginRead {
	if len(r.Header.Values("Content-Type")) > 1 {
		return loginRead{refused: ambiguous("several Content-Type headers")}
	}
	ct := mediaType(r.Header.Get("Content-Type"))
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	readable := ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data" || isJSONType(ct)
	var body *boundedBody
	if hasBody && (readable || m.getUsername == nil) {
		// A body GetUsername does not need read is left alone, unbounded.
		body = &boundedBody{ReadCloser: http.MaxBytesReader(w, r.Body, m.maxBody)}
		r.Body = body
	}
	if m.getUsername != nil {
		return m.readCustom(r, ct, body)
	}

	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return loginRead{refused: ambiguous("malformed query string")}
	}
	var found []string
	if err := m.collect(query, &found); err != nil {
		return loginRead{refused: err}
	}
	var post url.Values
	switch {
	case !hasBody:
	case ct == "application/x-www-form-urlencoded":
		b, res := readAll(body)
		if res != nil {
			return *res
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		if post, err = url.ParseQuery(string(b)); err != nil {
			return loginRead{refused: ambiguous("malformed form body")}
		}
		if err := m.collect(post, &found); err != nil {
			return loginRead{refused: err}
		}
	case ct == "multipart/form-data":
		err := r.ParseMultipartForm(m.maxBody)
		switch {
		case body.tooLarge:
			return loginRead{tooLarge: true}
		case body.gone:
			return loginRead{gone: true}
		case err != nil:
			return loginRead{refused: ambiguous("malformed multipart body")}
		}
		post = url.Values(r.MultipartForm.Value)
		if err := m.collect(post, &found); err != nil {
			return loginRead{refused: err}
		}
		for k := range r.MultipartForm.File {
			if m.isField(k) {
				return loginRead{refused: ambiguous("the %s field is a file", m.field)}
			}
		}
	case isJSONType(ct):
		b, res := readAll(body)
		if res != nil {
			return *res
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		if err := m.jsonLogin(b, &found); err != nil {
			return loginRead{refused: err}
		}
	default:
		// A body the middleware does not read could carry a username
		// the handler reads: refuse unless it is empty.
		var one [1]byte
		n, _ := io.ReadFull(body, one[:])
		if n > 0 {
			return loginRead{refused: ambiguous("a body of media type %q cannot be read for the %s field (set MiddlewareOptions.GetUsername)", ct, m.field)}
		}
		r.Body = http.NoBody
	}
	if len(found) > 1 {
		return loginRead{refused: ambiguous("the %s field is given %d times", m.field, len(found))}
	}
	read := loginRead{post: post, query: query, setForm: true}
	if len(found) == 1 {
		read.username = found[0]
	}
	return read
}

// apply leaves r so that the handler's r.FormValue and r.PostFormValue see
// what was read (done only for a request that reaches the handler).
func (lr *loginRead) apply(r *http.Request, field string) {
	if !lr.setForm {
		return
	}
	post := lr.post
	if post == nil {
		post = url.Values{}
	}
	form := make(url.Values, len(post)+len(lr.query))
	for k, v := range post {
		form[k] = append(form[k], v...)
	}
	for k, v := range lr.query {
		form[k] = append(form[k], v...)
	}
	if lr.username != "" || post.Has(field) || lr.query.Has(field) {
		post[field] = []string{lr.username}
		form[field] = []string{lr.username}
	}
	r.PostForm, r.Form = post, form
}

// readCustom prepares r for MiddlewareOptions.GetUsername and calls it.
func (m *Middleware) readCustom(r *http.Request, ct string, body *boundedBody) loginRead {
	switch {
	case body == nil:
	case isJSONType(ct):
		b, res := readAll(body)
		if res != nil {
			return *res
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
	case ct == "multipart/form-data":
		_ = r.ParseMultipartForm(m.maxBody)
	case ct == "application/x-www-form-urlencoded":
		_ = r.ParseForm()
	}
	if body != nil && body.tooLarge {
		return loginRead{tooLarge: true}
	}
	if body != nil && body.gone {
		return loginRead{gone: true}
	}
	return loginRead{username: m.getUsername(r)}
}

// readAll reads a bounded body; res is set when it could not be read whole.
func readAll(body *boundedBody) (b []byte, res *loginRead) {
	b, err := io.ReadAll(body)
	switch {
	case body.tooLarge:
		return nil, &loginRead{tooLarge: true}
	case body.gone || err != nil:
		return nil, &loginRead{gone: true}
	}
	return b, nil
}

// isField reports whether a field name is the username field or one that a
// lenient reader could take for it (another case or width: the canonical
// forms are equal).
func (m *Middleware) isField(name string) bool {
	if name == m.field {
		return true
	}
	if len(name) == len(m.field) && strings.EqualFold(name, m.field) {
		return true
	}
	if isASCII(name) {
		return false
	}
	return CanonicalUsername(name) == m.fieldCanon
}

// collect appends the values of the username field in vs to found, and
// refuses a variant of the field's name.
func (m *Middleware) collect(vs url.Values, found *[]string) error {
	for k, v := range vs {
		if !m.isField(k) {
			continue
		}
		if k != m.field {
			return ambiguous("field %q is not %q", k, m.field)
		}
		*found = append(*found, v...)
	}
	return nil
}

// jsonLogin reads the username of a JSON body: a single object whose
// members are unique where they name the username field, and whose
// username member is a string.
func (m *Middleware) jsonLogin(b []byte, found *[]string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ambiguous("the JSON body is not an object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ambiguous("malformed JSON body")
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return ambiguous("malformed JSON body")
		}
		if !m.isField(key) {
			continue
		}
		if key != m.field {
			return ambiguous("member %q is not %q", key, m.field)
		}
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return ambiguous("the %s member is not a string", m.field)
		}
		*found = append(*found, s)
	}
	if _, err := dec.Token(); err != nil {
		return ambiguous("malformed JSON body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return ambiguous("data after the JSON object")
	}
	return nil
}

// boundedBody notes that its http.MaxBytesReader hit the bound, or that the
// body ended before its Content-Length, whatever a parser makes of the
// error.
type boundedBody struct {
	io.ReadCloser
	tooLarge bool
	gone     bool
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			b.tooLarge = true
		} else {
			b.gone = true
		}
	}
	return n, err
}
