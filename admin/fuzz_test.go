package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-defender/defender/admin"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// FuzzUsernameRoundTrip blocks any username, then checks that api/blocks
// returns it exactly (canonical form), that the page never carries it as
// markup, and that a form or JSON unblock with it removes the block.
func FuzzUsernameRoundTrip(f *testing.F) {
	for _, s := range oddNames {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Add("2001:db8::/64", true)
	f.Add(strings.Repeat("é", 300), false)
	store, err := memory.New(nil)
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1
	cfg.DisableIPLockout = true
	d, err := defender.New(store, cfg, &defender.Options{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	h, err := admin.New(d, admin.Options{Authorize: func(*http.Request) bool { return true }, Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	serve := func(method, path, ct, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	f.Fuzz(func(t *testing.T, name string, viaJSON bool) {
		if !utf8.ValidString(name) {
			return // JSON cannot carry invalid UTF-8 byte for byte
		}
		ctx := context.Background()
		// Start clean, whatever an earlier (failed) input left.
		for {
			blocks, _, err := d.Blocks(ctx, "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(blocks) == 0 {
				break
			}
			for _, b := range blocks {
				d.UnblockUsername(ctx, b.Username)
			}
		}
		canon := d.Canonical(ctx, name)
		if canon == "" || strings.TrimSpace(canon) == "" {
			return // not a username: never counted
		}
		if len(defender.TrimUsername(name)) > defender.MaxUsernameBytes {
			if dec := d.Attempt(ctx, defender.Login{Username: name}).Decision(); dec.Verdict != defender.Refused {
				t.Fatalf("a name over MaxUsernameBytes: %v, want refused", dec.Verdict)
			}
			return
		}
		for i := 0; i < 3; i++ {
			a := d.Attempt(ctx, defender.Login{Username: name})
			if !a.Decision().Allowed() {
				break
			}
			a.Failed(ctx)
		}
		rec := serve("GET", "/api/blocks?limit=1000", "", "")
		var page struct{ Blocks []defender.BlockInfo }
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != 200 {
			t.Fatalf("api/blocks: %d %v", rec.Code, err)
		}
		if len(page.Blocks) != 1 || page.Blocks[0].Username != canon {
			t.Fatalf("api/blocks = %+v, want %q", page.Blocks, canon)
		}
		html := serve("GET", "/", "", "").Body.String()
		esc := htmlAttr(canon)
		if !strings.Contains(html, "<code>"+esc+"</code>") || !strings.Contains(html, `value="`+esc+`"`) {
			t.Fatalf("page lacks the escaped %q", esc)
		}
		if esc != canon && strings.Contains(html, "<code>"+canon+"</code>") {
			t.Fatalf("page carries %q unescaped", canon)
		}
		var rec2 *httptest.ResponseRecorder
		if viaJSON {
			b, _ := json.Marshal(map[string]string{"username": page.Blocks[0].Username})
			rec2 = serve("POST", "/api/unblock", "application/json", string(b))
		} else {
			rec2 = serve("POST", "/api/unblock", "application/x-www-form-urlencoded", url.Values{"username": {page.Blocks[0].Username}}.Encode())
		}
		if rec2.Code != 200 || !strings.Contains(rec2.Body.String(), `"unblocked":true`) {
			t.Fatalf("unblock %q: %d %s", canon, rec2.Code, rec2.Body.String())
		}
		rec = serve("GET", "/api/blocks", "", "")
		if !strings.Contains(rec.Body.String(), `"blocks":[]`) {
			t.Fatalf("still blocked after unblock: %s", rec.Body.String())
		}
	})
}
