package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/admin"
	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

var quiet = slog.New(slog.DiscardHandler)

const (
	adminUser = "root"
	adminPass = "s3cret"
)

// env is one Defender on a memory store behind the admin handler, mounted
// at /admin/defender/ as the demo mounts it.
type env struct {
	t     *testing.T
	d     *defender.Defender
	store *memory.Store
	srv   *httptest.Server
	base  string // srv.URL + "/admin/defender/"
}

type envOpt func(*defender.Config, *admin.Options)

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	store, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1
	ao := admin.Options{Authorize: admin.BasicAuth(adminUser, adminPass), Logger: quiet}
	for _, o := range opts {
		o(&cfg, &ao)
	}
	d, err := defender.New(store, cfg, &defender.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h, err := admin.New(d, ao)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/defender/", http.StripPrefix("/admin/defender", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		d.Close()
		store.Close()
	})
	return &env{t: t, d: d, store: store, srv: srv, base: srv.URL + "/admin/defender/"}
}

// block fails logins until l is blocked.
func (e *env) block(l defender.Login) {
	e.t.Helper()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		a := e.d.Attempt(ctx, l)
		if !a.Decision().Allowed() {
			return
		}
		if a.Failed(ctx).Verdict == defender.Locked {
			return
		}
	}
	e.t.Fatalf("never blocked: %+v", l)
}

func (e *env) blockUser(name string) { e.block(defender.Login{Username: name}) }

func (e *env) blockIP(ip string) { e.block(defender.Login{IP: netip.MustParseAddr(ip)}) }

// do sends a request with the admin's credentials unless anon.
func (e *env) do(method, path string, body io.Reader, hdr map[string]string, anon bool) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if !anon {
		req.SetBasicAuth(adminUser, adminPass)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *env) get(path string) (int, string) {
	resp := e.do("GET", path, nil, nil, false)
	return resp.StatusCode, readBody(e.t, resp)
}

// blocks returns every block, paging through api/blocks.
func (e *env) blocks(limit int) []defender.BlockInfo {
	e.t.Helper()
	var all []defender.BlockInfo
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			e.t.Fatal("api/blocks never ends")
		}
		code, body := e.get(fmt.Sprintf("api/blocks?limit=%d&cursor=%s", limit, url.QueryEscape(cursor)))
		if code != 200 {
			e.t.Fatalf("api/blocks: %d %s", code, body)
		}
		var page struct {
			Blocks []defender.BlockInfo `json:"blocks"`
			Next   *string              `json:"next"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			e.t.Fatalf("api/blocks JSON: %v: %s", err, body)
		}
		if page.Blocks == nil || page.Next == nil {
			e.t.Fatalf("api/blocks: blocks and next must always be present: %s", body)
		}
		all = append(all, page.Blocks...)
		if *page.Next == "" {
			return all
		}
		cursor = *page.Next
	}
}

func (e *env) postForm(path string, v url.Values, hdr map[string]string) *http.Response {
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for k, x := range hdr {
		h[k] = x
	}
	return e.do("POST", path, strings.NewReader(v.Encode()), h, false)
}

func (e *env) postJSON(path string, v any, hdr map[string]string) *http.Response {
	b, _ := json.Marshal(v)
	h := map[string]string{"Content-Type": "application/json"}
	for k, x := range hdr {
		h[k] = x
	}
	return e.do("POST", path, strings.NewReader(string(b)), h, false)
}

func TestNewRequiresAuthorizerAndDefender(t *testing.T) {
	store, _ := memory.New(nil)
	defer store.Close()
	d, err := defender.New(store, defender.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tests := []struct {
		name string
		d    *defender.Defender
		opts admin.Options
		want error
	}{
		{"no authorizer", d, admin.Options{}, admin.ErrNoAuthorizer},
		{"no defender", nil, admin.Options{Authorize: func(*http.Request) bool { return true }}, admin.ErrNoDefender},
		{"bad trusted origin", d, admin.Options{Authorize: func(*http.Request) bool { return true }, TrustedOrigins: []string{"not a url"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := admin.New(tt.d, tt.opts)
			if err == nil || h != nil {
				t.Fatalf("New = %v, %v; want an error", h, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSecurityHeadersEverywhere(t *testing.T) {
	e := newEnv(t)
	paths := []struct {
		method, path string
		anon         bool
		want         int
	}{
		{"GET", "", false, 200},
		{"GET", "api/blocks", false, 200},
		{"GET", "api/attempts", false, 404},
		{"GET", "assets/admin.css", false, 200},
		{"GET", "assets/admin.js", false, 200},
		{"GET", "nope", false, 404},
		{"GET", "", true, 401},
		{"GET", "api/unblock", false, 405},
		{"POST", "api/blocks", false, 405},
	}
	for _, p := range paths {
		t.Run(p.method+" "+p.path, func(t *testing.T) {
			resp := e.do(p.method, p.path, nil, nil, p.anon)
			readBody(t, resp)
			if resp.StatusCode != p.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, p.want)
			}
			for k, want := range map[string]string{
				"Cache-Control":           "no-store",
				"Content-Security-Policy": admin.ContentSecurityPolicy,
				"X-Frame-Options":         "DENY",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "same-origin",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	for _, must := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "form-action 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(admin.ContentSecurityPolicy, must) {
			t.Errorf("CSP lacks %q", must)
		}
	}
}

func TestUnauthorized(t *testing.T) {
	// Limit 3: the two wrong credentials below are counted, not blocked
	// (TestSignInLockedOut covers the lockout).
	e := newEnv(t, func(c *defender.Config, _ *admin.Options) { c.FailureLimit = 3 })
	e.blockUser("alice")
	for _, tc := range []struct {
		name, method, path, user, pass string
		anon                           bool
	}{
		{"no credentials, page", "GET", "", "", "", true},
		{"no credentials, api", "GET", "api/blocks", "", "", true},
		{"no credentials, unblock", "POST", "api/unblock", "", "", true},
		{"wrong password", "GET", "api/blocks", adminUser, "guess", false},
		{"wrong user", "GET", "api/blocks", "admin", adminPass, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.base+tc.path, strings.NewReader("username=alice"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if !tc.anon {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != 401 {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
			if strings.Contains(body, "alice") {
				t.Errorf("401 body leaks a blocked username: %q", body)
			}
		})
	}
	if got := e.blocks(100); len(got) != 1 {
		t.Fatalf("blocks after refused unblock = %+v, want alice still blocked", got)
	}
}

func TestCustomUnauthorizedHandler(t *testing.T) {
	e := newEnv(t, func(_ *defender.Config, o *admin.Options) {
		o.Authorize = func(r *http.Request) bool { return r.Header.Get("X-Staff") == "yes" }
		o.Unauthorized = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/accounts/login", http.StatusFound)
		})
	})
	resp := e.do("GET", "", nil, nil, true)
	readBody(t, resp)
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/accounts/login" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatal("custom handler must not get a Basic challenge")
	}
	resp = e.do("GET", "api/blocks", nil, map[string]string{"X-Staff": "yes"}, true)
	readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("authorized: %d", resp.StatusCode)
	}
}

func TestUnblockIsPostOnly(t *testing.T) {
	e := newEnv(t)
	e.blockUser("alice")
	for _, path := range []string{"api/unblock", "unblock", "api/unblock?username=alice", "unblock?username=alice"} {
		for _, m := range []string{"GET", "HEAD", "PUT", "DELETE"} {
			resp := e.do(m, path, nil, nil, false)
			readBody(t, resp)
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
				t.Errorf("%s %s: %d Allow=%q, want 405 Allow=POST", m, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
	}
	if got := e.blocks(100); len(got) != 1 {
		t.Fatalf("a GET unblocked: %+v", got)
	}
}

func TestCrossSiteUnblockRefused(t *testing.T) {
	tests := []struct {
		name    string
		hdr     map[string]string
		allowed bool
	}{
		{"Sec-Fetch-Site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"Sec-Fetch-Site same-site", map[string]string{"Sec-Fetch-Site": "same-site"}, false},
		{"cross-site with a matching Origin", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "SELF"}, false},
		{"foreign Origin, no Sec-Fetch-Site", map[string]string{"Origin": "https://evil.example"}, false},
		{"null Origin", map[string]string{"Origin": "null"}, false},
		{"same-origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "SELF"}, true},
		{"typed by the user (none)", map[string]string{"Sec-Fetch-Site": "none"}, true},
		{"old browser, own Origin", map[string]string{"Origin": "SELF"}, true},
		{"not a browser (no headers)", nil, true},
		{"trusted origin", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://ops.example"}, true},
	}
	for _, tt := range tests {
		for _, path := range []string{"api/unblock", "unblock"} {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				e := newEnv(t, func(_ *defender.Config, o *admin.Options) {
					o.TrustedOrigins = []string{"https://ops.example"}
				})
				e.blockUser("alice")
				hdr := map[string]string{}
				for k, v := range tt.hdr {
					if v == "SELF" {
						v = e.srv.URL
					}
					hdr[k] = v
				}
				resp := e.postForm(path, url.Values{"username": {"alice"}}, hdr)
				body := readBody(t, resp)
				left := e.blocks(100)
				if tt.allowed {
					if resp.StatusCode >= 400 || len(left) != 0 {
						t.Fatalf("status %d %q, blocks left %+v; want unblocked", resp.StatusCode, body, left)
					}
					return
				}
				if resp.StatusCode != 403 {
					t.Fatalf("status %d %q, want 403", resp.StatusCode, body)
				}
				if len(left) != 1 || left[0].Username != "alice" {
					t.Fatalf("blocks after a refused cross-site POST = %+v", left)
				}
			})
		}
	}
}

// oddNames are usernames that break naive escaping or URL handling.
var oddNames = []string{
	"<script>window.pwned=1</script>",
	`"><img src=x onerror=alert(1)>`,
	"a+b",
	"a/b/../c",
	"100%",
	"%2F%00",
	"two words",
	"tab\there",
	"emoji 🔒🙂",
	"ünïcödé",
	"back\\slash",
	"semi;colon&amp=1",
	"quote'apostrophe\"",
	"x\u202eevil",
	"' OR 1=1 --",
	"{\"$gt\":\"\"}",
}

func TestOddUsernamesListEscapeAndUnblock(t *testing.T) {
	for i, name := range oddNames {
		for _, via := range []string{"json", "form", "page"} {
			t.Run(fmt.Sprintf("%d/%s", i, via), func(t *testing.T) {
				e := newEnv(t)
				e.blockUser(name)
				canon := e.d.Canonical(context.Background(), name)
				got := e.blocks(100)
				if len(got) != 1 || got[0].Kind != defender.KindUsername || got[0].Username != canon {
					t.Fatalf("api/blocks = %+v, want username %q", got, canon)
				}
				code, page := e.get("")
				if code != 200 {
					t.Fatalf("page: %d", code)
				}
				if strings.Contains(page, "<script>window") || strings.Contains(page, "<img src=x") {
					t.Fatalf("page contains the raw identifier: %s", page)
				}
				if !strings.Contains(page, `value="`+htmlAttr(canon)+`"`) {
					t.Fatalf("page lacks the escaped unblock field for %q", canon)
				}
				var resp *http.Response
				switch via {
				case "json":
					resp = e.postJSON("api/unblock", map[string]string{"username": canon}, nil)
				case "form":
					resp = e.postForm("api/unblock", url.Values{"username": {canon}}, nil)
				default:
					resp = e.postForm("unblock", url.Values{"username": {canon}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
				}
				body := readBody(t, resp)
				switch via {
				case "page":
					if resp.StatusCode != 303 {
						t.Fatalf("form unblock: %d %s", resp.StatusCode, body)
					}
				default:
					var res struct {
						Kind      string `json:"kind"`
						Username  string `json:"username"`
						Unblocked bool   `json:"unblocked"`
					}
					if err := json.Unmarshal([]byte(body), &res); err != nil || resp.StatusCode != 200 {
						t.Fatalf("unblock: %d %s %v", resp.StatusCode, body, err)
					}
					if !res.Unblocked || res.Kind != "username" || res.Username != canon {
						t.Fatalf("unblock answer %+v", res)
					}
				}
				if left := e.blocks(100); len(left) != 0 {
					t.Fatalf("still blocked: %+v", left)
				}
			})
		}
	}
}

// htmlAttr escapes s as html/template does in an attribute value.
func htmlAttr(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "+", "&#43;", "\x00", "\uFFFD")
	return r.Replace(s)
}

func TestIPsAndPrefixesUnblock(t *testing.T) {
	tests := []struct {
		name, blockIP, listed, unblockWith string
	}{
		{"IPv4", "203.0.113.7", "203.0.113.7", "203.0.113.7"},
		{"IPv6 by prefix", "2001:db8:1:2::abcd", "2001:db8:1:2::/64", "2001:db8:1:2::/64"},
		{"IPv6 by another address of the prefix", "2001:db8:1:2::abcd", "2001:db8:1:2::/64", "2001:db8:1:2:ffff::1"},
		{"IPv6 with spaces around", "2001:db8::1", "2001:db8::/64", "  2001:db8::99 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.blockIP(tt.blockIP)
			got := e.blocks(100)
			if len(got) != 1 || got[0].Kind != defender.KindIP || got[0].IP != tt.listed {
				t.Fatalf("api/blocks = %+v, want ip %q", got, tt.listed)
			}
			if got[0].SecondsRemaining <= 0 || got[0].SecondsRemaining > 300 || got[0].Permanent {
				t.Fatalf("remaining = %+v", got[0])
			}
			_, page := e.get("")
			if !strings.Contains(page, "<code>"+tt.listed+"</code>") {
				t.Fatalf("page does not list %s", tt.listed)
			}
			resp := e.postForm("api/unblock", url.Values{"ip": {tt.unblockWith}}, nil)
			body := readBody(t, resp)
			if resp.StatusCode != 200 || !strings.Contains(body, `"unblocked":true`) {
				t.Fatalf("unblock: %d %s", resp.StatusCode, body)
			}
			if left := e.blocks(100); len(left) != 0 {
				t.Fatalf("still blocked: %+v", left)
			}
		})
	}
}

func TestPairMode(t *testing.T) {
	e := newEnv(t, func(c *defender.Config, _ *admin.Options) { c.LockOutByIPAndUsername = true })
	e.block(defender.Login{IP: netip.MustParseAddr("2001:db8::5"), Username: "Bob Smith"})
	got := e.blocks(100)
	if len(got) != 1 || got[0].Kind != defender.KindPair || got[0].IP != "2001:db8::/64" || got[0].Username != "bob smith" {
		t.Fatalf("blocks = %+v", got)
	}
	_, page := e.get("")
	for _, want := range []string{"Blocked IP and username pairs", `name="pair_ip" value="2001:db8::/64"`, `name="pair_username" value="bob smith"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, not := range []string{"Blocked IPs", "Blocked usernames"} {
		if strings.Contains(page, not) {
			t.Errorf("pair mode page shows %q", not)
		}
	}
	resp := e.postJSON("api/unblock", map[string]string{"pair_ip": "2001:db8::5", "pair_username": "BOB SMITH"}, nil)
	body := readBody(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, `"unblocked":true`) || !strings.Contains(body, `"kind":"pair"`) {
		t.Fatalf("unblock pair: %d %s", resp.StatusCode, body)
	}
	if left := e.blocks(100); len(left) != 0 {
		t.Fatalf("still blocked: %+v", left)
	}
	_, page = e.get("")
	if !strings.Contains(page, "No blocked pairs — ") {
		t.Error("empty pair table lacks its empty state")
	}
}

func TestBadUnblockRequests(t *testing.T) {
	e := newEnv(t)
	e.blockUser("alice")
	tests := []struct {
		name, ct, body, want string
	}{
		{"nothing", "application/x-www-form-urlencoded", "", "exactly one"},
		{"two kinds", "application/x-www-form-urlencoded", "ip=1.2.3.4&username=alice", "exactly one"},
		{"pair without username", "application/x-www-form-urlencoded", "pair_ip=1.2.3.4", "exactly one"},
		{"pair without ip", "application/json", `{"pair_username":"alice"}`, "exactly one"},
		{"bad ip", "application/x-www-form-urlencoded", "ip=alice", "not an IP"},
		{"bad pair ip", "application/json", `{"pair_ip":"999.1.1.1","pair_username":"alice"}`, "not an IP"},
		{"empty username", "application/json", `{"username":"   "}`, "empty"},
		{"bad JSON", "application/json", `{"username":`, "bad JSON"},
		{"JSON not a string", "application/json", `{"username":5}`, "bad JSON"},
		{"no content type", "", "username=alice", "send application/json"},
		{"text/plain", "text/plain", "username=alice", "send application/json"},
		{"bad multipart", "multipart/form-data; boundary=x", "garbage", "bad form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.ct != "" {
				hdr["Content-Type"] = tt.ct
			}
			resp := e.do("POST", "api/unblock", strings.NewReader(tt.body), hdr, false)
			body := readBody(t, resp)
			if resp.StatusCode != 400 || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s; want 400 with %q", resp.StatusCode, body, tt.want)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("API error is not JSON: %q", resp.Header.Get("Content-Type"))
			}
			resp = e.do("POST", "unblock", strings.NewReader(tt.body), hdr, false)
			body = readBody(t, resp)
			if resp.StatusCode != 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Fatalf("form: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
		})
	}
	// A body over the bound is refused, not read to the end.
	big := "username=" + strings.Repeat("a", 100<<10)
	resp := e.do("POST", "api/unblock", strings.NewReader(big), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, false)
	readBody(t, resp)
	if resp.StatusCode != 400 {
		t.Fatalf("100 KiB body: %d", resp.StatusCode)
	}
	// A multipart form works like a urlencoded one.
	resp = e.do("POST", "api/unblock", strings.NewReader("--x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n--x--\r\n"),
		map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, false)
	if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"unblocked":true`) {
		t.Fatalf("multipart: %d %s", resp.StatusCode, body)
	}
	// Unblocking what is not blocked is not an error.
	resp = e.postJSON("api/unblock", map[string]string{"username": "nobody"}, nil)
	if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"unblocked":false`) {
		t.Fatalf("not blocked: %d %s", resp.StatusCode, body)
	}
}

func TestFormUnblockRedirectsWithNotice(t *testing.T) {
	e := newEnv(t)
	e.blockUser("Alice")
	resp := e.postForm("unblock", url.Values{"username": {"alice"}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
	readBody(t, resp)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 303 || !strings.HasPrefix(loc, "./?") {
		t.Fatalf("%d %q", resp.StatusCode, loc)
	}
	_, page := e.get(loc[2:])
	if !strings.Contains(page, "Unblocked the username “alice”") {
		t.Fatalf("no notice on the page: %s", page)
	}
	// Again: it was not blocked any more.
	resp = e.postForm("unblock", url.Values{"ip": {"198.51.100.1"}}, nil)
	readBody(t, resp)
	loc = resp.Header.Get("Location")
	_, page = e.get(loc[2:])
	if !strings.Contains(page, "The IP 198.51.100.1 was not blocked") {
		t.Fatalf("no 'not blocked' notice: %s", page)
	}
	resp = e.postForm("unblock", url.Values{"pair_ip": {"198.51.100.1"}, "pair_username": {"x y"}}, nil)
	readBody(t, resp)
	_, page = e.get(resp.Header.Get("Location")[2:])
	if !strings.Contains(page, "username “x y” from IP 198.51.100.1") {
		t.Fatalf("no pair notice: %s", page)
	}
	_, page = e.get("?done=bogus")
	if !strings.Contains(page, "Unblocked the identity") {
		t.Fatalf("unknown kind notice: %s", page)
	}
}

func TestPagination(t *testing.T) {
	e := newEnv(t, func(_ *defender.Config, o *admin.Options) { o.PageSize = 7 })
	want := map[string]bool{}
	for i := 0; i < 23; i++ {
		name := fmt.Sprintf("user%02d", i)
		e.blockUser(name)
		want[name] = true
	}
	for _, limit := range []int{1, 5, 10, 1000} {
		got := e.blocks(limit)
		seen := map[string]bool{}
		for _, b := range got {
			if seen[b.Username] {
				t.Fatalf("limit %d: %s listed twice", limit, b.Username)
			}
			seen[b.Username] = true
		}
		if len(seen) != len(want) {
			t.Fatalf("limit %d: listed %d of %d", limit, len(seen), len(want))
		}
	}
	// One page's worth in the API.
	_, body := e.get("api/blocks?limit=4")
	var page struct {
		Blocks []defender.BlockInfo
		Next   string
	}
	json.Unmarshal([]byte(body), &page)
	if len(page.Blocks) > 4 || page.Next == "" {
		t.Fatalf("limit=4: %d blocks, next %q", len(page.Blocks), page.Next)
	}
	// The HTML page shows at most PageSize blocks and links to the next.
	seen := map[string]bool{}
	path := ""
	for pages := 0; ; pages++ {
		if pages > 30 {
			t.Fatal("HTML pages never end")
		}
		_, html := e.get(path)
		n := strings.Count(html, `name="username" value="user`)
		if n > 7 {
			t.Fatalf("page shows %d blocks, PageSize is 7", n)
		}
		for name := range want {
			if strings.Contains(html, `value="`+name+`"`) {
				seen[name] = true
			}
		}
		if pages > 0 && !strings.Contains(html, "First page") {
			t.Fatal("later page lacks a link to the first")
		}
		i := strings.Index(html, `rel="next"`)
		if i < 0 {
			break
		}
		j := strings.LastIndex(html[:i], `href="./?`)
		k := strings.Index(html[j+6:], `"`)
		path = strings.ReplaceAll(html[j+8:j+6+k], "&amp;", "&")
		if n == 0 && !strings.Contains(html, "No blocked usernames on this page.") {
			t.Fatal("empty middle page lacks its note")
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("HTML pages showed %d of %d", len(seen), len(want))
	}
	if code, body := e.get("api/blocks?limit=5000"); code != 200 || strings.Count(body, `"kind"`) != 23 {
		t.Fatalf("limit over the maximum: %d %s", code, body)
	}
	if code, body := e.get("api/attempts?limit=5000"); code != 404 {
		t.Fatalf("attempts without a sink: %d %s", code, body)
	}
	for _, bad := range []string{"0", "-1", "x"} {
		resp := e.do("GET", "api/blocks?limit="+bad, nil, nil, false)
		readBody(t, resp)
		if resp.StatusCode != 400 {
			t.Errorf("limit=%s: %d", bad, resp.StatusCode)
		}
	}
}

func TestEmptyStates(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*defender.Config)
		want []string
		not  []string
	}{
		{"default", func(c *defender.Config) { c.FailureLimit = 3 }, []string{
			"No blocked IPs — nobody has failed more than 3 times in a row recently.",
			"No blocked usernames — no account has had more than 3 wrong passwords in a row recently.",
			"No audit log is configured",
			"failures are forgotten after 5 min without a new one",
		}, []string{"pairs"}},
		{"per-kind limits", func(c *defender.Config) { c.FailureLimitIP = 20; c.FailureLimitUsername = 5 }, []string{
			"more than 20 times", "more than 5 wrong passwords", "<strong>5</strong> failed logins per username and <strong>20</strong> per IP"}, nil},
		{"IP lockout disabled", func(c *defender.Config) { c.DisableIPLockout = true; c.AttemptCooloffTime = 0 }, []string{
			"No blocked usernames", "failures are never forgotten"}, []string{"Blocked IPs"}},
		{"username lockout disabled", func(c *defender.Config) { c.DisableUsernameLockout = true; c.AttemptCooloffTime = 90 * time.Minute }, []string{
			"No blocked IPs", "forgotten after 1 h 30 min"}, []string{"Blocked usernames"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *defender.Config, _ *admin.Options) { tt.cfg(c) })
			_, page := e.get("")
			for _, w := range tt.want {
				if !strings.Contains(page, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(page, n) {
					t.Errorf("page shows %q", n)
				}
			}
		})
	}
}

func TestPageShowsBlocksWithTimes(t *testing.T) {
	e := newEnv(t, func(c *defender.Config, _ *admin.Options) {
		c.LockoutCooloffTimes = []time.Duration{90 * time.Minute}
	})
	e.block(defender.Login{IP: netip.MustParseAddr("192.0.2.1"), Username: "carol"})
	_, page := e.get("")
	for _, want := range []string{
		"<code>192.0.2.1</code>", "<code>carol</code>", "in 1 h 30 min", `data-seconds="5400"`,
		`<link rel="stylesheet" href="assets/admin.css">`, `<script src="assets/admin.js" defer></script>`,
		`<form method="post" action="unblock">`, `<span class="badge">1</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, " style=") || strings.Contains(page, " onclick") {
		t.Error("page has inline script or style (the CSP forbids them)")
	}
}

func TestPermanentBlock(t *testing.T) {
	e := newEnv(t, func(c *defender.Config, _ *admin.Options) {
		c.LockoutCooloffTimes = []time.Duration{0}
	})
	e.blockUser("dave")
	got := e.blocks(10)
	if len(got) != 1 || !got[0].Permanent || got[0].SecondsRemaining != 0 {
		t.Fatalf("%+v", got)
	}
	_, body := e.get("api/blocks")
	if !strings.Contains(body, `"permanent":true`) {
		t.Fatal(body)
	}
	_, page := e.get("")
	if !strings.Contains(page, ">permanent</span>") {
		t.Fatal("page does not say permanent")
	}
}

// failingSource is an audit source whose store is down.
type failingSource struct{}

func (failingSource) Query(context.Context, auditlog.Filter) ([]auditlog.Record, error) {
	return nil, auditlog.ErrUnavailable
}

func TestAttempts(t *testing.T) {
	sink, err := file.New(filepath.Join(t.TempDir(), "attempts.jsonl"), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var recs []auditlog.Record
	for i, r := range []struct {
		ip, user        string
		success, locked bool
	}{
		{"192.0.2.1", "alice", false, false},
		{"192.0.2.1", "alice", true, false},
		{"2001:db8::/64", "<script>window.pwned=1</script>", false, true},
		{"192.0.2.9", "bob", false, false},
	} {
		recs = append(recs, auditlog.Record{
			ID: auditlog.NewID(now), Time: now.Add(time.Duration(i-10) * time.Minute), IP: r.ip, Username: r.user,
			UserAgent: "test-agent/1.0", Path: "/login", Success: r.success, Locked: r.locked,
		})
	}
	recs[3].FailMode = "open"
	if err := sink.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(_ *defender.Config, o *admin.Options) {
		o.Attempts = sink
		o.Now = func() time.Time { return now }
	})
	tests := []struct {
		query string
		want  int
	}{
		{"", 4}, {"?ip=192.0.2.1", 2}, {"?username=alice", 2}, {"?ip=192.0.2.1&username=bob", 0},
		{"?username=" + url.QueryEscape("<script>window.pwned=1</script>"), 1}, {"?ip=2001:db8::/64", 1}, {"?limit=1", 1},
		{"?ip=+192.0.2.9+", 1},
	}
	for _, tt := range tests {
		t.Run("api"+tt.query, func(t *testing.T) {
			code, body := e.get("api/attempts" + tt.query)
			var res struct{ Attempts []auditlog.Record }
			if err := json.Unmarshal([]byte(body), &res); err != nil || code != 200 {
				t.Fatalf("%d %s %v", code, body, err)
			}
			if len(res.Attempts) != tt.want {
				t.Fatalf("%d attempts, want %d: %s", len(res.Attempts), tt.want, body)
			}
			if !sort.SliceIsSorted(res.Attempts, func(i, j int) bool { return res.Attempts[i].Time.After(res.Attempts[j].Time) }) {
				t.Fatal("not newest first")
			}
			if strings.Contains(body, "<script>") {
				t.Fatal("JSON carries a raw <script> (must be \\u003c escaped)")
			}
		})
	}
	_, page := e.get("")
	for _, want := range []string{"Recent login attempts", "7 min ago", "10 min ago", "pill-locked", "pill-ok", "wrong password", "fail open",
		"&lt;script&gt;window.pwned=1&lt;/script&gt;", `name="ip" value=""`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	_, page = e.get("?username=bob")
	if !strings.Contains(page, `value="bob"`) || strings.Contains(page, "<code>alice</code>") || !strings.Contains(page, "Clear") {
		t.Error("search by username does not filter the page")
	}
	_, page = e.get("?username=nobody")
	if !strings.Contains(page, "No attempts match this search") {
		t.Error("empty search lacks its empty state")
	}
	code, _ := e.get("api/attempts?limit=zero")
	if code != 400 {
		t.Errorf("bad limit: %d", code)
	}

	empty, err := file.New(filepath.Join(t.TempDir(), "empty.jsonl"), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	e2 := newEnv(t, func(_ *defender.Config, o *admin.Options) { o.Attempts = empty })
	if _, page := e2.get(""); !strings.Contains(page, "No login attempts recorded yet") {
		t.Error("empty audit log lacks its empty state")
	}
	if _, body := e2.get("api/attempts"); !strings.Contains(body, `"attempts":[]`) {
		t.Errorf("empty attempts JSON: %s", body)
	}

	e3 := newEnv(t, func(_ *defender.Config, o *admin.Options) { o.Attempts = failingSource{} })
	if code, body := e3.get("api/attempts"); code != 503 || !strings.Contains(body, "audit log unavailable") {
		t.Errorf("failing source: %d %s", code, body)
	}
	if code, page := e3.get(""); code != 200 || !strings.Contains(page, "The audit log did not answer") {
		t.Errorf("failing source page: %d", code)
	}
	resp := e3.do("POST", "api/attempts", nil, nil, false)
	readBody(t, resp)
	if resp.StatusCode != 405 {
		t.Errorf("POST api/attempts: %d", resp.StatusCode)
	}
}

func TestStoreDown(t *testing.T) {
	// Fail closed (the default): the admin's own sign-in cannot be
	// counted, so it is refused like any login.
	closed := newEnv(t)
	closed.store.Close()
	resp0 := closed.do("GET", "api/blocks", nil, nil, false)
	readBody(t, resp0)
	if resp0.StatusCode != 503 || resp0.Header.Get(defender.ReasonHeader) != "unavailable" {
		t.Fatalf("sign-in with the store closed, fail mode closed: %d %q", resp0.StatusCode, resp0.Header.Get(defender.ReasonHeader))
	}
	// Fail open: the admin signs in and sees that the store is down.
	e := newEnv(t, func(c *defender.Config, _ *admin.Options) { c.FailMode = defender.FailOpen })
	e.blockUser("alice")
	e.store.Close()
	code, body := e.get("api/blocks")
	if code != 503 || !strings.Contains(body, "store unavailable") {
		t.Fatalf("api/blocks with the store closed: %d %s", code, body)
	}
	code, page := e.get("")
	if code != 200 || !strings.Contains(page, "The store did not answer") || strings.Contains(page, "No blocked") {
		t.Fatalf("page with the store closed: %d", code)
	}
	for _, path := range []string{"api/unblock", "unblock"} {
		resp := e.postForm(path, url.Values{"username": {"alice"}}, nil)
		body := readBody(t, resp)
		if resp.StatusCode != 503 {
			t.Fatalf("%s with the store closed: %d %s", path, resp.StatusCode, body)
		}
	}
	resp := e.do("POST", "", nil, nil, false)
	readBody(t, resp)
	if resp.StatusCode != 405 {
		t.Fatalf("POST index: %d", resp.StatusCode)
	}
	resp = e.do("GET", "", nil, map[string]string{"Accept": "application/json"}, false)
	readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("index asked for JSON: %d", resp.StatusCode)
	}
}

func TestMountWithTrailingSlashPrefix(t *testing.T) {
	store, _ := memory.New(nil)
	defer store.Close()
	d, _ := defender.New(store, defender.DefaultConfig(), nil)
	defer d.Close()
	h, err := admin.New(d, admin.Options{Authorize: func(*http.Request) bool { return true }, PageSize: 5000})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/x/", "/x"} {
		rec := httptest.NewRecorder()
		http.StripPrefix(p, h).ServeHTTP(rec, httptest.NewRequest("GET", "/x/", nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Blocked logins") {
			t.Fatalf("StripPrefix(%q): %d", p, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	http.StripPrefix("/x/", h).ServeHTTP(rec, httptest.NewRequest("GET", "/x/api/blocks", nil))
	if rec.Code != 200 {
		t.Fatalf("api under /x/: %d", rec.Code)
	}
}

func TestBasicAuth(t *testing.T) {
	auth := admin.BasicAuth("admin", "pw")
	none := admin.BasicAuth("admin", "")
	tests := []struct {
		name        string
		set         bool
		user, pass  string
		want, want0 bool
	}{
		{"right", true, "admin", "pw", true, false},
		{"wrong password", true, "admin", "pW", false, false},
		{"wrong user", true, "Admin", "pw", false, false},
		{"empty password", true, "admin", "", false, false},
		{"no header", false, "", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.set {
				r.SetBasicAuth(tt.user, tt.pass)
			}
			if got := auth(r); got != tt.want {
				t.Errorf("BasicAuth = %v, want %v", got, tt.want)
			}
			if got := none(r); got != tt.want0 {
				t.Errorf("BasicAuth with empty password = %v", got)
			}
		})
	}
}

func TestPageSortsBySoonestUnblock(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	store, _ := memory.New(nil)
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1
	cfg.LockoutCooloffTimes = []time.Duration{time.Hour, time.Minute, 0}
	d, err := defender.New(store, cfg, &defender.Options{Logger: quiet, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	e := &env{t: t, d: d}
	// One username blocked three times: 1 h, then 1 min, then permanent;
	// others once (1 h) — the escalation gives three different durations.
	for _, name := range []string{"hour", "minute", "forever"} {
		for n := 0; n < map[string]int{"hour": 1, "minute": 2, "forever": 3}[name]; n++ {
			e.blockUser(name)
			if n < map[string]int{"hour": 1, "minute": 2, "forever": 3}[name]-1 {
				if _, err := d.UnblockUsername(context.Background(), name); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	h, _ := admin.New(d, admin.Options{Authorize: func(*http.Request) bool { return true }, Logger: quiet})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page := rec.Body.String()
	i, j, k := strings.Index(page, `value="minute"`), strings.Index(page, `value="hour"`), strings.Index(page, `value="forever"`)
	if i < 0 || j < 0 || k < 0 || !(i < j && j < k) {
		t.Fatalf("order minute %d, hour %d, forever %d; want soonest first, permanent last", i, j, k)
	}
}

// TestRejectedInputIsNotAnOutage: input the engine or the store refuses (a
// forged cursor, an address it will not key) is a 400, never a 503 "store
// unavailable" that would page someone.
func TestRejectedInputIsNotAnOutage(t *testing.T) {
	e := newEnv(t)
	if code, body := e.get("api/blocks?cursor=%00nonsense"); code != http.StatusBadRequest {
		t.Fatalf("bad cursor: %d %s", code, body)
	}
	if code, body := e.get("?cursor=%00nonsense"); code != http.StatusOK || !strings.Contains(body, "not valid") {
		t.Fatalf("page with bad cursor: %d", code)
	}
	resp := e.do("POST", "api/unblock", strings.NewReader(`{"ip":"0.0.0.0"}`),
		map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}, false)
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unblock 0.0.0.0: %d %s", resp.StatusCode, body)
	}
}

// TestSignInLockedOut: guessing the admin's password is a login like any
// other: counted before Authorize runs, locked out past the limit (the
// right password included), in parallel too, and visible as a block.
func TestSignInLockedOut(t *testing.T) {
	var checks atomic.Int64
	e := newEnv(t, func(c *defender.Config, o *admin.Options) {
		c.FailureLimit = 3
		basic := admin.BasicAuth(adminUser, adminPass)
		o.Authorize = func(r *http.Request) bool { checks.Add(1); return basic(r) }
	})
	guess := func(pass string) *http.Response {
		req, _ := http.NewRequest("GET", e.base+"api/blocks", nil)
		req.SetBasicAuth(adminUser, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp
	}
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- guess(fmt.Sprintf("guess-%d", i)).StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	n401, n429 := 0, 0
	for c := range codes {
		switch c {
		case 401:
			n401++
		case 429:
			n429++
		default:
			t.Errorf("status %d", c)
		}
	}
	// At most limit+1 guesses reach Authorize, in any order: 3 answered
	// 401 and the 4th locked, or fewer when the burst outran the block.
	if got := checks.Load(); got > 4 || n401 > 3 || n401+n429 != 50 {
		t.Fatalf("Authorize ran %d times; %d answered 401, %d 429", got, n401, n429)
	}
	if resp := guess(adminPass); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the right password while locked: %d", resp.StatusCode)
	}
	blocks, _, err := e.d.Blocks(context.Background(), "", 10)
	if err != nil || len(blocks) != 2 {
		t.Fatalf("blocks %+v, %v: want the admin's IP and username", blocks, err)
	}
	if _, err := e.d.UnblockIP(context.Background(), "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.UnblockUsername(context.Background(), adminUser); err != nil {
		t.Fatal(err)
	}
	if resp := guess(adminPass); resp.StatusCode != 200 {
		t.Fatalf("after the unblock: %d", resp.StatusCode)
	}
}
