package file_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func newSink(t testing.TB, path string, opts file.Options) *file.Sink {
	t.Helper()
	s, err := file.New(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rec(at time.Time, user string) auditlog.Record {
	return auditlog.Record{ID: auditlog.NewID(at), Time: at.UTC(), IP: "192.0.2.1", Username: user}
}

// lines returns the lines of path; each must be a JSON record.
func lines(t testing.TB, path string) []auditlog.Record {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditlog.Record
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var r auditlog.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("%s:%d is not valid JSON: %q", path, n, sc.Text())
			continue
		}
		out = append(out, r)
	}
	return out
}

func TestOpenURL(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	os.Chdir(dir)
	cases := []struct {
		url, path string
		text      string
	}{
		{"file://" + dir + "/a/b.jsonl?sync=true&dedupe=10", dir + "/a/b.jsonl", ""},
		{"file://localhost" + dir + "/c.jsonl", dir + "/c.jsonl", ""},
		{"file:rel/d.jsonl", "rel/d.jsonl", ""},
		{"file://host/x", "", `host "host" not supported`},
		{"file://", "", "no file path"},
		{"file:///x?sync=maybe", "", `sync="maybe"`},
		{"file:///x?dedupe=0", "", `dedupe="0"`},
		{"file:///x?rotate=1", "", "unknown query parameter(s) rotate"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			s, err := auditlog.Open(ctx(t), c.url)
			if c.text != "" {
				if !errors.Is(err, auditlog.ErrInvalidURL) || !strings.Contains(err.Error(), c.text) {
					t.Errorf("Open = %v, want ErrInvalidURL mentioning %q", err, c.text)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.(*file.Sink).Path(); got != c.path {
				t.Errorf("path %q, want %q", got, c.path)
			}
			if err := s.Write(ctx(t), []auditlog.Record{rec(time.Now(), "x")}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(c.path); err != nil {
				t.Error(err)
			}
		})
	}
	if _, err := file.New("", file.Options{}); !errors.Is(err, auditlog.ErrInvalidConfig) {
		t.Errorf("New(\"\") = %v", err)
	}
	os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600)
	if _, err := file.New(filepath.Join(dir, "plain", "x.jsonl"), file.Options{}); err == nil {
		t.Error("New under a regular file succeeded")
	}
}

// TestEscaping: a username holding a newline and a fake record stays one
// field of one line; so do other control characters and HTML.
func TestEscaping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	s := newSink(t, path, file.Options{})
	evil := "bob\n{\"id\":\"ffffffffffffffffffffffffffffffff\",\"username\":\"admin\",\"login_valid\":true}\r\n\u2028<script>\x00\x1b[31m"
	r := rec(time.Now(), evil)
	r.UserAgent = "ua\n\"quoted\""
	if err := s.Write(ctx(t), []auditlog.Record{r}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if n := strings.Count(string(raw), "\n"); n != 1 {
		t.Fatalf("one record became %d lines:\n%s", n, raw)
	}
	got := lines(t, path)
	if len(got) != 1 || got[0].Username != evil || got[0].UserAgent != r.UserAgent {
		t.Errorf("read back %+v", got)
	}
	for _, bad := range []string{"<script>", "\x1b", "\u2028"} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("file holds %q unescaped", bad)
		}
	}
}

// TestRotation: 100 goroutines write while the file is renamed away
// several times: every record is in exactly one file, once, and every line
// of every file is valid JSON.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "attempts.jsonl")
	s := newSink(t, path, file.Options{})
	const goroutines, each = 100, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string]bool{}
	start := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < each; i++ {
				r := rec(time.Now(), fmt.Sprintf("g%d-%d", g, i))
				mu.Lock()
				want[r.ID] = true
				mu.Unlock()
				if err := s.Write(ctx(t), []auditlog.Record{r}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	close(start)
	rotated := []string{path}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for n := 1; ; n++ {
		select {
		case <-done:
		default:
			if n <= 20 {
				time.Sleep(time.Millisecond)
				p := fmt.Sprintf("%s.%d", path, n)
				if err := os.Rename(path, p); err == nil {
					rotated = append(rotated, p)
				}
				continue
			}
			<-done
		}
		break
	}
	count := map[string]int{}
	for _, p := range rotated {
		for _, r := range lines(t, p) {
			count[r.ID]++
		}
	}
	missing, dup := 0, 0
	for id := range want {
		switch count[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	t.Logf("%d records, %d files (%d rotations): %d missing, %d duplicated", len(want), len(rotated), len(rotated)-1, missing, dup)
	if missing != 0 || dup != 0 || len(count) != len(want) {
		t.Error("want every record exactly once across the files")
	}
	if len(rotated) < 3 {
		t.Errorf("only %d rotations happened", len(rotated)-1)
	}
}

// TestDedupe: IDs at the end of an existing file, and recent ones, are not
// written again; the window is bounded.
func TestDedupe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	s := newSink(t, path, file.Options{DedupeWindow: 2})
	now := time.Now()
	a, b, c := rec(now, "a"), rec(now, "b"), rec(now, "c")
	for _, batch := range [][]auditlog.Record{{a, b}, {a, b, b}, {c}} {
		if err := s.Write(ctx(t), batch); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(lines(t, path)); n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
	// Window of 2: a was forgotten; documented bound.
	s.Write(ctx(t), []auditlog.Record{a})
	if n := len(lines(t, path)); n != 4 {
		t.Errorf("%d lines after a replay outside the window, want 4 (the documented bound)", n)
	}
	if got, _ := s.Query(ctx(t), auditlog.Filter{}); len(got) != 3 {
		t.Errorf("Query returned %d records, want 3 (one per ID)", len(got))
	}
	s.Close()
	// A new sink seeds its window from the file's tail.
	s2 := newSink(t, path, file.Options{})
	s2.Write(ctx(t), []auditlog.Record{a, b, c})
	if n := len(lines(t, path)); n != 4 {
		t.Errorf("%d lines after a replay into a reopened sink, want 4", n)
	}
	if err := s2.Write(ctx(t), []auditlog.Record{{}}); !errors.Is(err, auditlog.ErrInvalidConfig) {
		t.Errorf("record without ID: %v", err)
	}
	if err := s2.Write(ctx(t), nil); err != nil {
		t.Error(err)
	}
}

// TestTailSeedLargeFile: the tail scan starts mid-line in a big file.
func TestTailSeedLargeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	f, _ := os.Create(path)
	w := bufio.NewWriter(f)
	pad := strings.Repeat("x", 200)
	now := time.Now()
	var last auditlog.Record
	for i := 0; i < (file.TailScanBytes/250)+1000; i++ {
		last = rec(now, pad)
		b, _ := json.Marshal(last)
		w.Write(append(b, '\n'))
	}
	w.Flush()
	f.Close()
	s := newSink(t, path, file.Options{})
	before, _ := os.Stat(path)
	s.Write(ctx(t), []auditlog.Record{last})
	after, _ := os.Stat(path)
	if before.Size() != after.Size() {
		t.Error("the last record of a large file was written again")
	}
}

func TestQueryRotatedAndCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	now := time.Now().UTC()
	old, mid, cur := rec(now.Add(-2*time.Hour), "old"), rec(now.Add(-time.Hour), "mid"), rec(now, "cur")
	write := func(p string, rs ...auditlog.Record) {
		f, _ := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		for _, r := range rs {
			b, _ := json.Marshal(r)
			f.Write(append(b, '\n'))
		}
		f.WriteString("not json\n{\"id\":\"\"}\n\n{\"id\":\"torn")
		f.Close()
	}
	write(path+file.RotatedSuffix, old, mid)
	write(path, mid, cur) // mid in both files: returned once
	s := newSink(t, path, file.Options{})
	got, err := s.Query(ctx(t), auditlog.Filter{})
	if err != nil || len(got) != 3 || got[0].ID != cur.ID || got[2].ID != old.ID {
		t.Fatalf("Query = %v, %v; want cur, mid, old", got, err)
	}
	got, _ = s.Query(ctx(t), auditlog.Filter{Limit: 1})
	if len(got) != 1 || got[0].ID != cur.ID {
		t.Errorf("Limit 1 = %v", got)
	}
	// The torn line at the end does not swallow the next record.
	next := rec(now.Add(time.Second), "next")
	s.Write(ctx(t), []auditlog.Record{next})
	if got, _ := s.Query(ctx(t), auditlog.Filter{Username: "next"}); len(got) != 1 {
		t.Errorf("record after a torn line: %v", got)
	}
	n, err := s.DeleteBefore(ctx(t), now.Add(-30*time.Minute))
	if err != nil || n != 3 { // old and mid in .1, mid in the file
		t.Errorf("DeleteBefore = %d, %v; want 3", n, err)
	}
	got, _ = s.Query(ctx(t), auditlog.Filter{})
	if len(got) != 2 {
		t.Errorf("after DeleteBefore: %v", got)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "not json") {
		t.Error("DeleteBefore dropped a line it could not decode")
	}
	// Writes go to the rewritten file.
	s.Write(ctx(t), []auditlog.Record{rec(now, "after")})
	if got, _ := s.Query(ctx(t), auditlog.Filter{Username: "after"}); len(got) != 1 {
		t.Errorf("write after DeleteBefore lost: %v", got)
	}
}

// TestUnavailable: with its directory gone, Write fails (a real error) and
// succeeds again once it is back.
func TestUnavailable(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "log")
	path := filepath.Join(dir, "a.jsonl")
	s := newSink(t, path, file.Options{Sync: true})
	r1, r2 := rec(time.Now(), "1"), rec(time.Now(), "2")
	if err := s.Write(ctx(t), []auditlog.Record{r1}); err != nil {
		t.Fatal(err)
	}
	os.Rename(dir, dir+".away")
	if err := s.Write(ctx(t), []auditlog.Record{r2}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("Write with the directory gone = %v, want ErrUnavailable", err)
	}
	if _, err := s.Query(ctx(t), auditlog.Filter{}); err != nil {
		t.Errorf("Query of a missing file = %v, want no error", err)
	}
	os.Rename(dir+".away", dir)
	if err := s.Write(ctx(t), []auditlog.Record{r2}); err != nil {
		t.Fatal(err)
	}
	if got := lines(t, path); len(got) != 2 {
		t.Errorf("%d records, want 2", len(got))
	}
	// A file that cannot be read.
	os.Remove(path)
	os.Mkdir(path, 0o700)
	if _, err := s.Query(ctx(t), auditlog.Filter{}); err == nil {
		t.Error("Query of a directory succeeded")
	}
	if _, err := s.DeleteBefore(ctx(t), time.Now()); err == nil {
		t.Error("DeleteBefore of a directory succeeded")
	}
}

func TestClosedAndCanceled(t *testing.T) {
	s := newSink(t, filepath.Join(t.TempDir(), "a.jsonl"), file.Options{})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(canceled, []auditlog.Record{rec(time.Now(), "x")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write = %v", err)
	}
	if _, err := s.Query(canceled, auditlog.Filter{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Query = %v", err)
	}
	if _, err := s.DeleteBefore(canceled, time.Now()); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteBefore = %v", err)
	}
	if !strings.HasPrefix(s.String(), "file:") {
		t.Errorf("String() = %q", s.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}

// TestOldLinesAndNewFields: lines written before Count, Until and
// CanonicalUsername existed are read back as records without them and
// found by their exact typed username; a plain record's line has none of
// the new fields (it is byte for byte what it was); a coalesced record's
// line has them.
func TestOldLinesAndNewFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attempts.jsonl")
	old := `{"id":"0190000000000000000000000000old1","time":"2026-11-28T12:00:00Z","ip":"192.0.2.1","username":"Alice","user_agent":"ua","path":"/login","http_accept":"*/*","login_valid":false,"locked":true}` + "\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, path, file.Options{})
	at := time.Date(2026, 11, 28, 12, 0, 1, 0, time.UTC)
	plain := auditlog.Record{ID: "plain", Time: at, IP: "192.0.2.1", Username: "bob", UserAgent: "ua", Path: "/login", Accept: "*/*"}
	flood := auditlog.Record{ID: "flood", Time: at.Add(time.Second), IP: "192.0.2.1", Username: "ALICE", CanonicalUsername: "alice",
		Locked: true, Count: 37, Until: at.Add(1900 * time.Millisecond)}
	if err := s.Write(ctx(t), []auditlog.Record{plain, flood}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ls := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(ls) != 3 {
		t.Fatalf("%d lines: %s", len(ls), data)
	}
	if want := `{"id":"plain","time":"2026-11-28T12:00:01Z","ip":"192.0.2.1","username":"bob","user_agent":"ua","path":"/login","http_accept":"*/*","login_valid":false,"locked":false}`; ls[1] != want {
		t.Errorf("plain record line\n got %s\nwant %s", ls[1], want)
	}
	if want := `{"id":"flood","time":"2026-11-28T12:00:02Z","ip":"192.0.2.1","username":"ALICE","canonical_username":"alice","user_agent":"","path":"","http_accept":"","login_valid":false,"locked":true,"count":37,"until":"2026-11-28T12:00:02.9Z"}`; ls[2] != want {
		t.Errorf("coalesced record line\n got %s\nwant %s", ls[2], want)
	}
	for _, c := range []struct {
		user, want string
	}{{"alice", "flood"}, {"Alice", "0190000000000000000000000000old1"}, {"ALICE", ""}, {"bob", "plain"}} {
		got, err := s.Query(ctx(t), auditlog.Filter{Username: c.user})
		if err != nil {
			t.Fatal(err)
		}
		ids := ""
		for _, r := range got {
			ids += r.ID
		}
		if ids != c.want {
			t.Errorf("Query(username %q) = %q, want %q", c.user, ids, c.want)
		}
	}
}
