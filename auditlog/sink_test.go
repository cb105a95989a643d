package auditlog_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	_ "github.com/go-defender/defender/auditlog/file"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		url  string
		ok   bool
		text string
	}{
		{"file://" + filepath.Join(dir, "a.jsonl"), true, ""},
		{"FILE://" + filepath.Join(dir, "b.jsonl") + "?sync=true", true, ""},
		{"nosuch://x", false, `unknown scheme "nosuch"`},
		{"/var/log/x", false, "no scheme"},
		{"mongodb://user:s3cret@host/db", false, "unknown scheme"},
		{"file://:s3cret@%zz", false, "invalid"},
		{"file://" + filepath.Join(dir, "c.jsonl") + "?bogus=1", false, "unknown query parameter(s) bogus"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			s, err := auditlog.Open(context.Background(), c.url)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if !errors.Is(err, auditlog.ErrInvalidURL) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("Open(%q) = %v, want ErrInvalidURL mentioning %q", c.url, err, c.text)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
	if got := auditlog.Schemes(); !strings.Contains(strings.Join(got, ","), "file") {
		t.Errorf("Schemes() = %v, want file among them", got)
	}
}

func TestRegisterPanics(t *testing.T) {
	open := func(context.Context, *url.URL) (auditlog.Sink, error) { return nil, nil }
	for name, f := range map[string]func(){
		"duplicate": func() { auditlog.Register("file", open) },
		"nil":       func() { auditlog.Register("test-nil", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Register did not panic")
				}
			}()
			f()
		})
	}
	auditlog.Register("test-ok", open)
	if s, err := auditlog.Open(context.Background(), "test-ok://"); s != nil || err != nil {
		t.Errorf("Open via a registered opener = %v, %v", s, err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"mongodb://u:pw@h/db":  "mongodb://u:xxxxx@h/db",
		"file:///x":            "file:///x",
		"mongodb://u:pw@%zz/x": "mongodb://(unparsable)",
		"%zz":                  "(unparsable)",
	} {
		if got := auditlog.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParams(t *testing.T) {
	u, _ := url.Parse("x://h/?a=1&a=2&b=&c=3")
	p := auditlog.NewParams(u)
	if v, ok := p.Get("a"); !ok || v != "2" {
		t.Errorf("Get(a) = %q, %v; want the last value", v, ok)
	}
	if v, ok := p.Get("b"); !ok || v != "" {
		t.Errorf("Get(b) = %q, %v", v, ok)
	}
	if _, ok := p.Get("zz"); ok {
		t.Error("Get of an absent parameter reported present")
	}
	if err := p.Done(); !errors.Is(err, auditlog.ErrInvalidURL) || !strings.Contains(err.Error(), "c") {
		t.Errorf("Done = %v, want the unconsumed c", err)
	}
	p.Get("c")
	if err := p.Done(); err != nil {
		t.Errorf("Done after consuming all = %v", err)
	}
}

func TestFilterMatch(t *testing.T) {
	now := time.Now()
	r := auditlog.Record{IP: "192.0.2.1", Username: "bob", Time: now}
	cases := []struct {
		f    auditlog.Filter
		want bool
	}{
		{auditlog.Filter{}, true},
		{auditlog.Filter{IP: "192.0.2.1"}, true},
		{auditlog.Filter{IP: "192.0.2.10"}, false},
		{auditlog.Filter{Username: "bob"}, true},
		{auditlog.Filter{Username: "Bob"}, false},
		{auditlog.Filter{Since: now}, true},
		{auditlog.Filter{Since: now.Add(time.Nanosecond)}, false},
		{auditlog.Filter{IP: "192.0.2.1", Username: "bob", Since: now.Add(-time.Hour), Limit: 1}, true},
	}
	for _, c := range cases {
		if got := c.f.Match(r); got != c.want {
			t.Errorf("%+v.Match = %v, want %v", c.f, got, c.want)
		}
	}
}

func TestSortNewestFirst(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rs := []auditlog.Record{{ID: "a", Time: t0}, {ID: "c", Time: t0.Add(time.Second)}, {ID: "b", Time: t0}, {ID: "d", Time: t0.Add(-time.Second)}}
	auditlog.SortNewestFirst(rs)
	var got string
	for _, r := range rs {
		got += r.ID
	}
	if got != "cbad" {
		t.Errorf("order %q, want cbad", got)
	}
}

func TestCleanup(t *testing.T) {
	e := newFileEnv(t)
	now := time.Now().UTC()
	old := auditlog.Record{ID: auditlog.NewID(now), Time: now.Add(-25 * time.Hour)}
	recent := auditlog.Record{ID: auditlog.NewID(now), Time: now.Add(-time.Hour)}
	if err := e.sink.Write(context.Background(), []auditlog.Record{old, recent}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n, err := auditlog.Cleanup(context.Background(), e.sink, 24*time.Hour, &out)
	if err != nil || n != 1 {
		t.Fatalf("Cleanup = %d, %v; want 1", n, err)
	}
	if !strings.HasPrefix(out.String(), "deleted 1 access attempt(s) older than 24h0m0s") {
		t.Errorf("output %q", out.String())
	}
	if n, err := auditlog.Cleanup(context.Background(), e.sink, 24*time.Hour, nil); err != nil || n != 0 {
		t.Errorf("second Cleanup = %d, %v", n, err)
	}
	if _, err := auditlog.Cleanup(context.Background(), e.sink, 0, nil); !errors.Is(err, auditlog.ErrInvalidConfig) {
		t.Errorf("Cleanup with age 0 = %v, want ErrInvalidConfig", err)
	}
	e.sink.Close()
	if _, err := auditlog.Cleanup(context.Background(), e.sink, time.Hour, nil); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("Cleanup on a closed sink = %v, want ErrClosed", err)
	}
}

func TestRecordTruncate(t *testing.T) {
	r := auditlog.Record{Username: strings.Repeat("é", 200), UserAgent: "ua", Accept: strings.Repeat("a", 2000)}.Truncate()
	if len(r.Username) != 254 || r.UserAgent != "ua" || len(r.Accept) != auditlog.MaxAccept {
		t.Errorf("lengths %d %q %d", len(r.Username), r.UserAgent, len(r.Accept))
	}
	a, b := auditlog.NewID(time.UnixMilli(1)), auditlog.NewID(time.UnixMilli(2))
	if len(a) != 32 || a[:12] != "000000000001" || a >= b {
		t.Errorf("NewID: %q, %q", a, b)
	}
}

func TestFilterMatchCanonical(t *testing.T) {
	newRec := auditlog.Record{Username: "ＡＬＩＣＥ", CanonicalUsername: "alice"}
	oldRec := auditlog.Record{Username: "Alice"} // written before CanonicalUsername existed
	for _, c := range []struct {
		r    auditlog.Record
		name string
		want bool
	}{
		{newRec, "alice", true},       // by the canonical name
		{newRec, "ＡＬＩＣＥ", false},      // never by the typed name when there is a canonical one
		{newRec, "ALICE", false},      // the caller canonicalises; the sink compares exactly
		{oldRec, "Alice", true},       // old records: by the exact typed name
		{oldRec, "alice", false},      // ... only
		{newRec, "", true},            // no username condition
		{auditlog.Record{}, "", true}, // a record without any name
		{auditlog.Record{}, "x", false},
	} {
		if got := (auditlog.Filter{Username: c.name}).Match(c.r); got != c.want {
			t.Errorf("Filter{Username: %q}.Match(%+v) = %v, want %v", c.name, c.r, got, c.want)
		}
		if c.name != "" && c.r.MatchUsername(c.name) != c.want {
			t.Errorf("MatchUsername(%q) on %+v != %v", c.name, c.r, c.want)
		}
	}
	if n := (auditlog.Record{Count: 37}).Attempts(); n != 37 {
		t.Errorf("Attempts of Count 37 = %d", n)
	}
	for _, c := range []int64{-1, 0, 1} {
		if n := (auditlog.Record{Count: c}).Attempts(); n != 1 {
			t.Errorf("Attempts of Count %d = %d, want 1", c, n)
		}
	}
}
