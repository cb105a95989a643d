package faulttest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-defender/defender/admin"
	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// FuzzOpenStoreURL opens store URLs with every backend registered (redis
// in all its forms, memcached, bolt, memory): a URL either opens (and
// closes) or fails with an error wrapping backend.ErrInvalidURL (or
// backend.ErrInvalid for an out-of-range option) that does not show the
// password. So that a fuzzed URL never reaches the network or the file
// system, every host is replaced by 127.0.0.1:1 (refused at once) and a
// bolt file is always a file in a temporary directory; the rest of the URL
// (scheme, user, host count, path, every parameter) is the fuzzer's.
func FuzzOpenStoreURL(f *testing.F) {
	for _, s := range []string{
		"redis://u:secretpw@h:6379/2?dial_timeout=100ms&pool_size=3&prefix=x:",
		"rediss://:pw@h?skip_verify=true", "redis+cluster://a:1,b:2?read_timeout=1s",
		"redis+sentinel://mymaster:pw@h:26379,h2/0?sentinel_password=s",
		"memcached://a:1,b?prefix=app:&timeout=50ms&max_idle=2", "memcached://",
		"bolt:///x.db?timeout=1s&nosync=true&max_batch_size=4", "bolt:rel.db", "memory://?max_keys=10",
		"memory://", "%zz", "redis://[::1", "unknown://h", "redis://h?unknown=1", "memcached://u@h",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err == nil {
			raw = neuter(u, dir)
		}
		b, err := backend.Open(context.Background(), raw)
		if err == nil {
			if b == nil {
				t.Fatal("nil backend without error")
			}
			_ = b.Close()
			return
		}
		if !errors.Is(err, backend.ErrInvalidURL) && !errors.Is(err, backend.ErrInvalid) {
			t.Fatalf("%q: error %v wraps neither ErrInvalidURL nor ErrInvalid", raw, err)
		}
		if u, perr := url.Parse(raw); perr == nil && u.User != nil {
			pw, ok := u.User.Password()
			// A password that also occurs elsewhere in the URL (in a
			// parameter, say) may show there: only the password itself
			// must be hidden.
			bare := *u
			bare.User = url.User(u.User.Username())
			if ok && len(pw) >= 4 && !strings.Contains(bare.String(), pw) && strings.Contains(err.Error(), pw) {
				t.Fatalf("%q: password shown in %v", raw, err)
			}
		}
	})
}

// neuter points every host of u at a refused loopback port and every bolt
// file into dir, keeping the shape of the URL.
func neuter(u *url.URL, dir string) string {
	if strings.EqualFold(u.Scheme, "bolt") {
		u.Opaque = ""
		u.Host = ""
		u.Path = filepath.Join(dir, "fuzz.db")
		return u.String()
	}
	if u.Host != "" {
		hosts := strings.Split(u.Host, ",")
		for i, h := range hosts {
			if h != "" {
				hosts[i] = "127.0.0.1:1"
			}
		}
		u.Host = strings.Join(hosts, ",")
	}
	if u.Opaque != "" {
		u.Opaque = "x"
	}
	return u.String()
}

// FuzzAdminRequests sends arbitrary requests (method, path, query, body,
// content type, same-origin or not) to the admin handler over a store
// holding an IP block and a username block: it never panics, never answers
// 5xx, always sends its security headers, answers JSON where it says so,
// never echoes markup, and only a POST may remove a block.
func FuzzAdminRequests(f *testing.F) {
	for _, s := range []struct {
		method        uint8
		path, q, body string
		ct            uint8
		sameOrigin    bool
	}{
		{0, "/", "", "", 0, true},
		{0, "/api/blocks", "limit=2&cursor=abc", "", 0, true},
		{0, "/api/attempts", "ip=192.0.2.1&username=<script>alert(1)</script>&limit=-1", "", 0, true},
		{1, "/api/unblock", "", `{"ip":"192.0.2.1"}`, 1, true},
		{1, "/api/unblock", "", "username=victim", 2, true},
		{1, "/unblock", "", "pair_ip=192.0.2.1&pair_username=victim", 2, true},
		{1, "/unblock", "", "username=%3Cscript%3Ealert(1)%3C/script%3E", 2, false},
		{2, "/api/unblock", "ip=192.0.2.1", "", 0, true},
		{0, "/assets/admin.js", "", "", 0, true},
		{0, "/../../etc/passwd", "", "", 0, true},
	} {
		f.Add(s.method, s.path, s.q, s.body, s.ct, s.sameOrigin)
	}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut, http.MethodHead, http.MethodOptions}
	cts := []string{"", "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"}
	f.Fuzz(func(t *testing.T, m uint8, path, query, body string, ct uint8, sameOrigin bool) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n?#") {
			return // not a request line a server would accept
		}
		store, err := memory.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		cfg := defender.DefaultConfig()
		cfg.FailureLimit = 1
		cfg.StoreAccessAttempts = false
		d, err := defender.New(store, cfg, &defender.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for i := 0; i < 2; i++ {
			d.Attempt(ctxBG, defender.Login{IP: netip.MustParseAddr("192.0.2.1"), Username: "victim"}).Failed(ctxBG)
		}
		h, err := admin.New(d, admin.Options{Authorize: func(*http.Request) bool { return true }, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		method := methods[int(m)%len(methods)]
		req, err := http.NewRequest(method, "http://admin.test"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.URL.RawQuery = query
		if c := cts[int(ct)%len(cts)]; c != "" {
			req.Header.Set("Content-Type", c)
		}
		if sameOrigin {
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		} else {
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		req.RemoteAddr = "127.0.0.1:5000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%s: status %d: %s", method, path, query, w.Code, w.Body)
		}
		hd := w.Header()
		if hd.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(hd.Get("Cache-Control"), "no-store") {
			t.Fatalf("%s %s: missing security headers: %v", method, path, hd)
		}
		ctype := hd.Get("Content-Type")
		if strings.HasPrefix(ctype, "application/json") && method != http.MethodHead && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s: invalid JSON: %q", method, path, w.Body)
		}
		if strings.HasPrefix(ctype, "text/html") && strings.Contains(w.Body.String(), "<script>alert") {
			t.Fatalf("%s %s: markup echoed: %s", method, path, w.Body)
		}
		blocks, _, err := d.Blocks(ctxBG, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) != 2 && (method != http.MethodPost || !sameOrigin) {
			t.Fatalf("%s %s (same origin %v) removed a block: %d left", method, path, sameOrigin, len(blocks))
		}
	})
}
