package admin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/go-defender/defender/admin"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// TestNoRedirectLeavesTheMount: whatever the path shape, no redirect the
// admin emits leads outside the point where it is mounted. The admin is
// mounted under a prefix with http.StripPrefix (with and without the
// trailing slash), behind the application's http.ServeMux (which cleans
// paths itself) and directly (a router that does not clean them, so the
// admin sees "//x" and "/assets/../x"). Every 3xx Location, resolved
// against the request URL, must stay under the prefix; the shapes that
// used to redirect ("/assets" to "/assets/") get a 404 instead.
func TestNoRedirectLeavesTheMount(t *testing.T) {
	store, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	d, err := defender.New(store, defender.DefaultConfig(), &defender.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h, err := admin.New(d, admin.Options{Authorize: admin.BasicAuth(adminUser, adminPass), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	// Paths relative to the mount point, and what the admin must answer
	// when it sees them as they are (0: any status but a redirect out).
	shapes := []struct {
		path string
		want int
	}{
		{"", 200},
		{"?cursor=", 200},
		{"assets", 404},
		{"assets/", 404},
		{"assets/admin.css", 200},
		{"assets/admin.js", 200},
		{"assets/admin.css/", 404},
		{"assets/index.html", 404},
		{"assets/nope.css", 404},
		{"assets/./admin.css", 404},
		{"assets//admin.css", 404},
		{"assets/../x", 404},
		{"assets/%2e%2e/x", 404},
		{"assets/..", 404},
		{"assets/../", 404},
		{"/x", 404},
		{"//x", 404},
		{"//evil.example/x", 404},
		{"./", 404},
		{".", 404},
		{"..", 404},
		{"../x", 404},
		{"../../x", 404},
		{"x/..", 404},
		{"api", 404},
		{"api/", 404},
		{"api/blocks", 200},
		{"api/blocks/", 404},
		{"api/attempts/", 404},
		{"api/../api/blocks", 404},
		{"unblock/", 404},
		{"nope/", 404},
		{"%2F%2Fx", 404},
	}
	type mount struct {
		name, prefix string
		handler      http.Handler
		cleans       bool // an http.ServeMux in front cleans paths first
	}
	var mounts []mount
	for _, strip := range []string{"/admin/defender", "/admin/defender/"} {
		mux := http.NewServeMux()
		mux.Handle("/admin/defender/", http.StripPrefix(strip, h))
		mux.Handle("/admin/defender", http.StripPrefix(strip, h))
		mounts = append(mounts,
			mount{"ServeMux+StripPrefix(" + strip + ")", "/admin/defender", mux, true},
			mount{"StripPrefix(" + strip + ")", "/admin/defender", http.StripPrefix(strip, h), false})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, m := range mounts {
		srv := httptest.NewServer(m.handler)
		for _, s := range shapes {
			for _, anon := range []bool{false, true} {
				raw := srv.URL + m.prefix + "/" + s.path
				req, err := http.NewRequest("GET", raw, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !anon {
					req.SetBasicAuth(adminUser, adminPass)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				what := m.name + " GET " + req.URL.RequestURI()
				if anon {
					what += " (anonymous)"
				}
				// The request itself targets the admin when its cleaned
				// path is under the prefix; the application's mux may
				// redirect the others wherever it likes.
				cleaned := path.Clean(req.URL.Path)
				inside := cleaned == m.prefix || strings.HasPrefix(cleaned, m.prefix+"/")
				if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 {
					to, err := req.URL.Parse(loc)
					if err != nil {
						t.Errorf("%s: %d to an unparsable Location %q", what, resp.StatusCode, loc)
						continue
					}
					if (inside || !m.cleans) && (to.Host != req.URL.Host || (to.Path != m.prefix && !strings.HasPrefix(to.Path, m.prefix+"/"))) {
						t.Errorf("%s: %d to %q (%s), outside the mount %s/", what, resp.StatusCode, loc, to, m.prefix)
					}
					continue
				}
				if !m.cleans && anon && resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s: %d, want 401 before anything else", what, resp.StatusCode)
				}
				if !m.cleans && !anon && s.want != 0 && resp.StatusCode != s.want {
					t.Errorf("%s: %d, want %d", what, resp.StatusCode, s.want)
				}
				if !m.cleans && resp.Header.Get("Content-Security-Policy") != admin.ContentSecurityPolicy {
					t.Errorf("%s: no CSP", what)
				}
			}
		}
		srv.Close()
	}
}

// TestMountWithoutSlash: a request for the mount point without its
// trailing slash (the stripped path is empty) is redirected, relatively,
// to the mount point with the slash (so that the page's relative links
// resolve inside it), keeping the query; with the slash, the page is served.
func TestMountWithoutSlash(t *testing.T) {
	store, _ := memory.New(nil)
	defer store.Close()
	d, _ := defender.New(store, defender.DefaultConfig(), &defender.Options{Logger: quiet})
	defer d.Close()
	h, err := admin.New(d, admin.Options{Authorize: func(*http.Request) bool { return true }, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		strip, target string
		code          int
		loc, resolved string
	}{
		{"/admin/defender", "/admin/defender", 303, "./defender/", "/admin/defender/"},
		{"/admin/defender", "/admin/defender?username=alice", 303, "./defender/?username=alice", "/admin/defender/?username=alice"},
		{"/admin/defender", "/admin/defender/", 200, "", ""},
		{"/admin/defender/", "/admin/defender/", 200, "", ""},
		{"/a:b", "/a:b", 303, "./a:b/", "/a:b/"},
		{"/x/.", "/x/.", 200, "", ""}, // no last segment to redirect to: the index
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", c.target, nil)
		http.StripPrefix(c.strip, h).ServeHTTP(rec, req)
		if rec.Code != c.code || rec.Header().Get("Location") != c.loc {
			t.Errorf("StripPrefix(%q) GET %s: %d %q, want %d %q", c.strip, c.target, rec.Code, rec.Header().Get("Location"), c.code, c.loc)
			continue
		}
		if c.loc != "" {
			base, _ := url.Parse("http://example.com" + c.target)
			if to, _ := base.Parse(c.loc); to.RequestURI() != c.resolved {
				t.Errorf("%q resolves to %q, want %q", c.loc, to.RequestURI(), c.resolved)
			}
		}
	}
	// Without the original request URI (a handler called directly), the
	// empty path is the index, as before.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/x", nil)
	req.RequestURI = ""
	http.StripPrefix("/x", h).ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("empty path without a request URI: %d", rec.Code)
	}
	// An unparsable request URI: the index too.
	rec = httptest.NewRecorder()
	req = httptest.NewRequest("GET", "/x", nil)
	req.RequestURI = "%zz"
	http.StripPrefix("/x", h).ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("empty path with a bad request URI: %d", rec.Code)
	}
}

// TestAssets: the stylesheet and script are served with their types (GET
// and HEAD), other methods are refused, and nothing is listed.
func TestAssets(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "assets/admin.css", 200, "text/css; charset=utf-8"},
		{"GET", "assets/admin.js", 200, "text/javascript; charset=utf-8"},
		{"HEAD", "assets/admin.css", 200, "text/css; charset=utf-8"},
		{"POST", "assets/admin.css", 405, ""},
		{"GET", "assets/", 404, ""},
	} {
		resp := e.do(c.method, c.path, nil, nil, false)
		body := readBody(t, resp)
		if resp.StatusCode != c.code || (c.ctype != "" && resp.Header.Get("Content-Type") != c.ctype) {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.code, c.ctype)
		}
		if c.method == "GET" && c.code == 200 && len(body) < 100 {
			t.Errorf("%s: body of %d bytes", c.path, len(body))
		}
		if strings.Contains(body, "admin.js") && c.path == "assets/" {
			t.Errorf("assets/ lists the directory: %s", body)
		}
		if c.code == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("405 without Allow: %v", resp.Header)
		}
	}
}
