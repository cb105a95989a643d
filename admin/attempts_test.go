package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/admin"
	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// failOn is an audit source that fails the queries for one username.
type failOn struct {
	admin.AttemptSource
	username string
}

func (f failOn) Query(ctx context.Context, flt auditlog.Filter) ([]auditlog.Record, error) {
	if flt.Username == f.username {
		return nil, auditlog.ErrUnavailable
	}
	return f.AttemptSource.Query(ctx, flt)
}

// attemptsEnv is an admin over a file sink holding attempts counted as
// alice under several spellings, old records (without a canonical name)
// typed alice and Alice, and a coalesced locked record of 37 attempts.
func attemptsEnv(t *testing.T, resolver defender.Resolver, wrap func(admin.AttemptSource) admin.AttemptSource) (http.Handler, time.Time) {
	t.Helper()
	sink, err := file.New(filepath.Join(t.TempDir(), "attempts.jsonl"), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return now.Add(time.Duration(min-30) * time.Minute) }
	recs := []auditlog.Record{
		{ID: "a1", Time: at(1), IP: "192.0.2.1", Username: "alice", CanonicalUsername: "alice"},
		{ID: "a2", Time: at(2), IP: "192.0.2.1", Username: "ALICE", CanonicalUsername: "alice"},
		{ID: "a3", Time: at(3), IP: "192.0.2.2", Username: "ａｌｉｃｅ", CanonicalUsername: "alice"},
		{ID: "a4", Time: at(4), IP: "192.0.2.3", Username: "Ａｌｉｃｅ", CanonicalUsername: "alice", Locked: true, Count: 37, Until: at(5)},
		{ID: "o1", Time: at(6), IP: "192.0.2.4", Username: "alice"}, // old: no canonical name
		{ID: "o2", Time: at(7), IP: "192.0.2.4", Username: "ALICE"}, // old, typed otherwise
		{ID: "b1", Time: at(8), IP: "192.0.2.5", Username: "bob", CanonicalUsername: "bob", Success: true},
	}
	if err := sink.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	store, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d, err := defender.New(store, defender.DefaultConfig(), &defender.Options{Logger: quiet, Resolver: resolver})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var src admin.AttemptSource = sink
	if wrap != nil {
		src = wrap(src)
	}
	h, err := admin.New(d, admin.Options{Authorize: func(*http.Request) bool { return true }, Logger: quiet,
		Attempts: src, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return h, now
}

func serve(h http.Handler, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	return rec
}

type attemptOut struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Count    *int64    `json:"count"`
	Until    time.Time `json:"until"`
}

func apiIDs(t *testing.T, h http.Handler, query string) ([]attemptOut, string) {
	t.Helper()
	rec := serve(h, "/api/attempts"+query)
	if rec.Code != 200 {
		t.Fatalf("api/attempts%s: %d %s", query, rec.Code, rec.Body)
	}
	var res struct{ Attempts []attemptOut }
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range res.Attempts {
		ids = append(ids, a.ID)
	}
	return res.Attempts, strings.Join(ids, ",")
}

// TestAttemptsSearchByCanonicalName: the username search finds every
// attempt counted against the name, whatever the spelling typed in the
// search box or at login, and old records by their exact typed name.
func TestAttemptsSearchByCanonicalName(t *testing.T) {
	h, _ := attemptsEnv(t, nil, nil)
	for _, c := range []struct {
		query, want string
	}{
		{"?username=alice", "o1,a4,a3,a2,a1"},                              // every spelling, and the old record typed alice
		{"?username=ALICE", "o2,o1,a4,a3,a2,a1"},                           // the same, and the old record typed ALICE
		{"?username=" + url.QueryEscape("ａｌｉｃｅ"), "o1,a4,a3,a2,a1"},        // full-width
		{"?username=" + url.QueryEscape(" Alice\u3000"), "o1,a4,a3,a2,a1"}, // spaces around
		{"?username=ALICE&limit=2", "o2,o1"},                               // the limit holds after merging
		{"?username=alice&ip=192.0.2.1", "a2,a1"},                          // with an IP
		{"?username=bob", "b1"},
		{"?username=nobody", ""},
		{"?username=" + url.QueryEscape("   "), "b1,o2,o1,a4,a3,a2,a1"}, // blank: no username condition
	} {
		if _, got := apiIDs(t, h, c.query); got != c.want {
			t.Errorf("api/attempts%s = %q, want %q", c.query, got, c.want)
		}
	}
	// The count is always in the JSON: N for a coalesced record, 1 otherwise.
	recs, _ := apiIDs(t, h, "?username=alice")
	for _, r := range recs {
		want := int64(1)
		if r.ID == "a4" {
			want = 37
			if r.Until.IsZero() {
				t.Errorf("coalesced record without until")
			}
		}
		if r.Count == nil || *r.Count != want {
			t.Errorf("record %s: count %v, want %d", r.ID, r.Count, want)
		}
	}

	page := serve(h, "/?username=ALICE").Body.String()
	for _, want := range []string{`value="ALICE"`, "Searching for <code>alice</code>", ">×37</span>", "37 attempts from 2026-11-28T11:34:00Z to 2026-11-28T11:35:00Z"} {
		if !strings.Contains(page, want) {
			t.Errorf("page searched for ALICE lacks %q", want)
		}
	}
	if strings.Contains(page, "<code>bob</code>") || strings.Count(page, `class="rel-ago"`) != 6 {
		t.Errorf("page searched for ALICE shows %d attempts, want 6", strings.Count(page, `class="rel-ago"`))
	}
	page = serve(h, "/?username=alice").Body.String()
	if strings.Contains(page, "Searching for") || strings.Count(page, `class="rel-ago"`) != 5 {
		t.Errorf("page searched for alice: want 5 attempts and no note about the canonical name")
	}
	if strings.Count(page, "pill-count") != 1 {
		t.Errorf("want one ×N pill, for the coalesced record")
	}
}

// TestAttemptsSearchWithResolver: the search canonicalises like the engine,
// resolver included; a name the resolver maps to nothing is searched as
// typed, never as "no condition".
func TestAttemptsSearchWithResolver(t *testing.T) {
	resolver := func(_ context.Context, name string) string {
		switch name {
		case "alice@example.com":
			return "alice"
		case "ghost":
			return ""
		}
		return name
	}
	h, _ := attemptsEnv(t, resolver, nil)
	if _, got := apiIDs(t, h, "?username="+url.QueryEscape("Alice@Example.com")); got != "o1,a4,a3,a2,a1" {
		t.Errorf("search through the resolver = %q", got)
	}
	if _, got := apiIDs(t, h, "?username=ghost"); got != "" {
		t.Errorf("search for a name resolved to nothing = %q, want nothing", got)
	}
}

// TestAttemptsSearchFails: a failure of either query (canonical or typed)
// is a 503 on the API and a notice on the page.
func TestAttemptsSearchFails(t *testing.T) {
	for _, name := range []string{"alice", "ALICE"} {
		h, _ := attemptsEnv(t, nil, func(s admin.AttemptSource) admin.AttemptSource { return failOn{s, name} })
		if rec := serve(h, "/api/attempts?username=ALICE"); rec.Code != 503 {
			t.Errorf("query for %s fails: api %d, want 503", name, rec.Code)
		}
		if rec := serve(h, "/?username=ALICE"); rec.Code != 200 || !strings.Contains(rec.Body.String(), "The audit log did not answer") {
			t.Errorf("query for %s fails: page %d without the notice", name, rec.Code)
		}
	}
	h, _ := attemptsEnv(t, nil, func(s admin.AttemptSource) admin.AttemptSource { return failOn{s, "x"} })
	if _, err := (failOn{username: "x"}).Query(context.Background(), auditlog.Filter{Username: "x"}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Fatal("failOn does not fail")
	}
	if _, got := apiIDs(t, h, "?username=bob"); got != "b1" {
		t.Errorf("other searches still work: %q", got)
	}
}
