package auditlog_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
)

// fileEnv is a file sink whose directory can be taken away (renamed) and
// given back: a real failure of every write in between.
type fileEnv struct {
	dir, away, path string
	sink            *file.Sink
}

func newFileEnv(t testing.TB) *fileEnv {
	t.Helper()
	root := t.TempDir()
	e := &fileEnv{dir: filepath.Join(root, "log"), away: filepath.Join(root, "log.away")}
	e.path = filepath.Join(e.dir, "attempts.jsonl")
	s, err := file.New(e.path, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.sink = s
	t.Cleanup(func() { s.Close() })
	return e
}

func (e *fileEnv) down(t testing.TB) {
	t.Helper()
	if err := os.Rename(e.dir, e.away); err != nil {
		t.Fatal(err)
	}
}

func (e *fileEnv) up(t testing.TB) {
	t.Helper()
	if err := os.Rename(e.away, e.dir); err != nil {
		t.Fatal(err)
	}
}

// countIDs reads every line of the files and counts each ID; every line
// must be valid JSON.
func countIDs(t testing.TB, paths ...string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		line := 0
		for sc.Scan() {
			line++
			var r auditlog.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.ID == "" {
				t.Errorf("%s:%d: not a record: %q (%v)", p, line, sc.Text(), err)
				continue
			}
			n[r.ID]++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// exactlyOnce checks that every id of want appears once in got and nothing
// else does.
func exactlyOnce(t testing.TB, got map[string]int, want []string) {
	t.Helper()
	missing, dup := 0, 0
	wantSet := map[string]bool{}
	for _, id := range want {
		wantSet[id] = true
		switch got[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	extra := 0
	for id := range got {
		if !wantSet[id] {
			extra++
		}
	}
	t.Logf("%d records sent: %d distinct ids stored, %d missing, %d duplicated, %d unexpected", len(want), len(got), missing, dup, extra)
	if missing != 0 || dup != 0 || extra != 0 {
		t.Errorf("want every record exactly once")
	}
}

func testLogger(t testing.TB) (*slog.Logger, *syncBuffer) {
	b := &syncBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newWriter(t testing.TB, sink auditlog.Sink, opts auditlog.WriterOptions) *auditlog.Writer {
	t.Helper()
	if opts.SpoolDir == "" {
		opts.SpoolDir = filepath.Join(t.TempDir(), "spool")
	}
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = 2*time.Millisecond, 20*time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger, _ = testLogger(t)
	}
	w, err := auditlog.NewWriter(sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func flush(t testing.TB, w *auditlog.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v (stats %+v)", err, w.Stats())
	}
}

func record(i int) auditlog.Record {
	return auditlog.Record{IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Username: fmt.Sprintf("user%d", i%97), Path: "/login/"}
}

func TestWriterDelivers(t *testing.T) {
	e := newFileEnv(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{BatchSize: 7})
	var ids []string
	for i := 0; i < 1000; i++ {
		r := record(i)
		r.ID = auditlog.NewID(time.Now())
		ids = append(ids, r.ID)
		w.Record(r)
	}
	flush(t, w)
	exactlyOnce(t, countIDs(t, e.path), ids)
	st := w.Stats()
	if st.Delivered != 1000 || st.Queued != 0 || st.Pending != 0 || st.Dropped != 0 || st.SinkErrors != 0 {
		t.Errorf("stats %+v, want 1000 delivered and nothing else", st)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(context.Background()); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	w.Record(record(1))
	if st := w.Stats(); st.Dropped != 1 {
		t.Errorf("Record after Close: dropped = %d, want 1", st.Dropped)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Errorf("Flush after Close with nothing pending = %v", err)
	}
}

func TestWriterFillsAndTruncates(t *testing.T) {
	e := newFileEnv(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{})
	before := time.Now().UTC()
	w.Record(auditlog.Record{Username: strings.Repeat("é", 200) + "\xff", UserAgent: strings.Repeat("a", 300),
		Path: strings.Repeat("p", 300), Accept: strings.Repeat("x", 2000)})
	flush(t, w)
	got, err := e.sink.Query(context.Background(), auditlog.Filter{})
	if err != nil || len(got) != 1 {
		t.Fatalf("Query = %v, %v", got, err)
	}
	r := got[0]
	if len(r.ID) != 32 || r.Time.Before(before.Truncate(time.Millisecond)) {
		t.Errorf("ID %q, Time %v: want a new ID and the current time", r.ID, r.Time)
	}
	w.Record(auditlog.Record{Username: "a\xffb", Time: time.Now()})
	flush(t, w)
	if got, _ := e.sink.Query(context.Background(), auditlog.Filter{Username: "a\uFFFDb"}); len(got) != 1 {
		t.Errorf("invalid UTF-8 was not replaced by U+FFFD: %v", got)
	}
	if len(r.Username) > auditlog.MaxUsername || len(r.UserAgent) != auditlog.MaxUserAgent || len(r.Path) != auditlog.MaxPath || len(r.Accept) != auditlog.MaxAccept {
		t.Errorf("field lengths %d %d %d %d exceed the bounds", len(r.Username), len(r.UserAgent), len(r.Path), len(r.Accept))
	}
}

// TestWriterSinkOutage: the sink fails for a while during 10,000 records
// (its directory is gone, every write fails), then comes back: every record
// arrives exactly once, and Record's latency does not depend on the sink.
func TestWriterSinkOutage(t *testing.T) {
	e := newFileEnv(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{QueueSize: 1024, BatchSize: 128})
	const total = 10000
	var ids []string
	lat := map[string][]time.Duration{}
	send := func(phase string, from, to int) {
		for i := from; i < to; i++ {
			if i%10 == 0 {
				// About 10,000 logins a second: a heavy but real load
				// (BenchmarkRecord measures the saturated case).
				time.Sleep(time.Millisecond)
			}
			r := record(i)
			r.ID = auditlog.NewID(time.Now())
			ids = append(ids, r.ID)
			t0 := time.Now()
			w.Record(r)
			lat[phase] = append(lat[phase], time.Since(t0))
		}
	}
	send("healthy", 0, 2000)
	flush(t, w)
	e.down(t)
	send("down", 2000, 8000)
	// Wait until the writer has seen the failure and spooled.
	deadline := time.Now().Add(30 * time.Second)
	for w.Stats().Queued > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := w.Stats()
	if st.SinkErrors == 0 || st.Pending == 0 {
		t.Fatalf("sink down: stats %+v, want sink errors and spooled records", st)
	}
	e.up(t)
	send("recovering", 8000, total)
	flush(t, w)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = w.Stats()
	t.Logf("stats: %+v", st)
	if st.Delivered != total || st.Dropped != 0 || st.Pending != 0 {
		t.Errorf("stats %+v: want %d delivered, none dropped or pending", st, total)
	}
	exactlyOnce(t, countIDs(t, e.path), ids)
	for _, phase := range []string{"healthy", "down", "recovering"} {
		d := lat[phase]
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		t.Logf("Record latency, sink %s: p50 %v, p99 %v, max %v (%d calls)", phase, d[len(d)/2], d[len(d)*99/100], d[len(d)-1], len(d))
	}
}

// TestWriterCloseWhileDown: Close persists what the sink did not take; the
// next Writer on the same spool delivers it.
func TestWriterCloseWhileDown(t *testing.T) {
	e := newFileEnv(t)
	spool := filepath.Join(t.TempDir(), "spool")
	w := newWriter(t, e.sink, auditlog.WriterOptions{SpoolDir: spool, SegmentMaxBytes: 4096})
	e.down(t)
	var ids []string
	for i := 0; i < 500; i++ {
		r := record(i)
		r.ID = auditlog.NewID(time.Now())
		ids = append(ids, r.ID)
		w.Record(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Pending != 500 || st.Delivered != 0 || st.Dropped != 0 {
		t.Fatalf("after Close with the sink down: %+v, want 500 pending", st)
	}
	if err := w.Flush(context.Background()); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("Flush on a closed writer with records pending = %v, want ErrClosed", err)
	}
	e.up(t)
	log, buf := testLogger(t)
	w2 := newWriter(t, e.sink, auditlog.WriterOptions{SpoolDir: spool, Logger: log})
	flush(t, w2)
	if !strings.Contains(buf.String(), "replaying records left by a previous run") {
		t.Errorf("no replay log line: %s", buf.String())
	}
	exactlyOnce(t, countIDs(t, e.path), ids)
}

// TestWriterCloseDelivers: Close delivers what is queued and spooled when
// the sink works.
func TestWriterCloseDelivers(t *testing.T) {
	e := newFileEnv(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{QueueSize: 4})
	e.down(t)
	var ids []string
	for i := 0; i < 300; i++ {
		r := record(i)
		r.ID = auditlog.NewID(time.Now())
		ids = append(ids, r.ID)
		w.Record(r)
	}
	e.up(t)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Pending != 0 || st.Delivered != 300 || st.Overflowed == 0 {
		t.Errorf("stats %+v: want all 300 delivered by Close, some through the overflow path", st)
	}
	exactlyOnce(t, countIDs(t, e.path), ids)
}

// TestWriterSpoolFull: a full spool refuses records, counts them, logs.
func TestWriterSpoolFull(t *testing.T) {
	e := newFileEnv(t)
	log, buf := testLogger(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{QueueSize: 1, SpoolMaxBytes: 2000, Logger: log})
	e.down(t)
	for i := 0; i < 100; i++ {
		w.Record(record(i))
	}
	err := w.Close(context.Background())
	st := w.Stats()
	if st.Dropped == 0 || st.Dropped+uint64(st.Pending) != 100 || st.SpoolBytes > 2000 {
		t.Errorf("stats %+v: want drops, and dropped + pending = 100, spool <= 2000 bytes", st)
	}
	if !strings.Contains(buf.String(), "audit records dropped") || !strings.Contains(buf.String(), "spool full") {
		t.Errorf("drops not logged: %s", buf.String())
	}
	if st.Dropped > 0 && err != nil && !errors.Is(err, auditlog.ErrSpoolFull) {
		t.Errorf("Close = %v, want nil or ErrSpoolFull", err)
	}
}

// TestWriterCloseDrops: records refused during Close make Close fail.
func TestWriterCloseDrops(t *testing.T) {
	e := newFileEnv(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{QueueSize: 100, SpoolMaxBytes: 500})
	e.down(t)
	for i := 0; i < 100; i++ {
		w.Record(record(i))
	}
	if err := w.Close(context.Background()); !errors.Is(err, auditlog.ErrSpoolFull) {
		t.Errorf("Close = %v, want ErrSpoolFull (stats %+v)", err, w.Stats())
	}
}

func TestWriterCorruptSpool(t *testing.T) {
	e := newFileEnv(t)
	spool := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	good := auditlog.Record{ID: auditlog.NewID(time.Now()), Time: time.Now().UTC(), IP: "192.0.2.1"}
	line, _ := json.Marshal(good)
	// A previous process died in the middle of a line; a stray position
	// file and a temp file of segments long gone.
	seg := string(line) + "\n" + `{"id":"abc","ti` + "\n\n"
	for name, body := range map[string]string{
		"00000000000000000007.seg":     seg,
		"00000000000000000003.pos":     "12",
		"00000000000000000007.pos.tmp": "0",
		"junk.seg":                     "x",
	} {
		if err := os.WriteFile(filepath.Join(spool, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w := newWriter(t, e.sink, auditlog.WriterOptions{SpoolDir: spool})
	flush(t, w)
	st := w.Stats()
	if st.Corrupt != 1 || st.Delivered != 1 {
		t.Errorf("stats %+v: want the good record delivered and one corrupt line counted", st)
	}
	exactlyOnce(t, countIDs(t, e.path), []string{good.ID})
	if _, err := os.Stat(filepath.Join(spool, "00000000000000000003.pos")); !os.IsNotExist(err) {
		t.Errorf("stray position file kept: %v", err)
	}
}

// TestWriterPositionFile: a spool with a position file resumes after it.
func TestWriterPositionFile(t *testing.T) {
	e := newFileEnv(t)
	spool := filepath.Join(t.TempDir(), "spool")
	os.MkdirAll(spool, 0o700)
	var body []byte
	var ids []string
	for i := 0; i < 3; i++ {
		r := auditlog.Record{ID: auditlog.NewID(time.Now()), Time: time.Now().UTC()}
		ids = append(ids, r.ID)
		b, _ := json.Marshal(r)
		body = append(append(body, b...), '\n')
	}
	first := bytes.IndexByte(body, '\n') + 1
	os.WriteFile(filepath.Join(spool, "00000000000000000001.seg"), body, 0o600)
	os.WriteFile(filepath.Join(spool, "00000000000000000001.pos"), []byte(fmt.Sprint(first)), 0o600)
	w := newWriter(t, e.sink, auditlog.WriterOptions{SpoolDir: spool})
	flush(t, w)
	if st := w.Stats(); st.Delivered != 2 {
		t.Errorf("delivered %d, want 2 (the first record was delivered before)", st.Delivered)
	}
	exactlyOnce(t, countIDs(t, e.path), ids[1:])
}

func TestNewWriterErrors(t *testing.T) {
	e := newFileEnv(t)
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	cases := []struct {
		name string
		sink auditlog.Sink
		opts auditlog.WriterOptions
		want error
		text string
	}{
		{"nil sink", nil, auditlog.WriterOptions{SpoolDir: dir}, auditlog.ErrInvalidConfig, "sink is nil"},
		{"no spool", e.sink, auditlog.WriterOptions{}, auditlog.ErrInvalidConfig, "SpoolDir"},
		{"negative queue", e.sink, auditlog.WriterOptions{SpoolDir: dir, QueueSize: -1}, auditlog.ErrInvalidConfig, "QueueSize"},
		{"negative spool", e.sink, auditlog.WriterOptions{SpoolDir: dir, SpoolMaxBytes: -1}, auditlog.ErrInvalidConfig, "SpoolMaxBytes"},
		{"spool under a file", e.sink, auditlog.WriterOptions{SpoolDir: filepath.Join(notDir, "spool")}, nil, "SpoolDir"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := auditlog.NewWriter(c.sink, c.opts)
			if err == nil {
				w.Close(context.Background())
				t.Fatal("NewWriter succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("err = %v, want %v mentioning %q", err, c.want, c.text)
			}
		})
	}
	t.Run("spool in use", func(t *testing.T) {
		spool := filepath.Join(dir, "shared")
		newWriter(t, e.sink, auditlog.WriterOptions{SpoolDir: spool, RetryMax: time.Millisecond, RetryMin: 2 * time.Millisecond})
		_, err := auditlog.NewWriter(e.sink, auditlog.WriterOptions{SpoolDir: spool})
		if !errors.Is(err, auditlog.ErrSpoolLocked) {
			t.Errorf("second writer on one spool: %v, want ErrSpoolLocked", err)
		}
	})
}

// TestWriterCloseContext: a Close whose context ends while the sink hangs
// returns promptly and keeps the records.
func TestWriterConcurrentRecord(t *testing.T) {
	e := newFileEnv(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{QueueSize: 16, BatchSize: 8})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ids []string
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				r := record(i)
				r.ID = auditlog.NewID(time.Now())
				mu.Lock()
				ids = append(ids, r.ID)
				mu.Unlock()
				w.Record(r)
			}
		}()
	}
	wg.Wait()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, countIDs(t, e.path), ids)
}

// TestWriterAssignsIDs: records that arrive without an ID (as the engine
// sends them) get one before they can be queued or spooled, so that a
// record spooled while the sink is down (by the flusher, or by Record
// itself when the queue is full) and replayed later is stored exactly
// once, under one ID.
func TestWriterAssignsIDs(t *testing.T) {
	e := newFileEnv(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{QueueSize: 8, BatchSize: 4})
	e.down(t)
	const n = 500
	for i := 0; i < n; i++ {
		r := record(i)
		r.Username = fmt.Sprintf("user%d", i)
		w.Record(r) // no ID
	}
	waitFor(t, "records spooled", func() bool { return w.Stats().Queued == 0 })
	st := w.Stats()
	t.Logf("spooled %d records, %d of them by Record (queue full)", st.Spooled, st.Overflowed)
	if st.Spooled == 0 {
		t.Fatalf("stats %+v: the test must spool", st)
	}
	e.up(t)
	flush(t, w)
	ids := countIDs(t, e.path)
	got, err := e.sink.Query(context.Background(), auditlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]int{}
	for _, r := range got {
		users[r.Username]++
	}
	if len(ids) != n || len(got) != n || len(users) != n {
		t.Errorf("%d IDs, %d records, %d usernames stored; want %d of each", len(ids), len(got), len(users), n)
	}
	for id, c := range ids {
		if c != 1 || len(id) != 32 {
			t.Errorf("ID %q stored %d times", id, c)
		}
	}
}

// TestWriterNewFields: the Writer sanitises CanonicalUsername like the
// other strings, keeps Count (a negative one becomes 0: one attempt) and
// stores Until in UTC.
func TestWriterNewFields(t *testing.T) {
	e := newFileEnv(t)
	w := newWriter(t, e.sink, auditlog.WriterOptions{})
	paris := time.FixedZone("CET", 3600)
	at := time.Date(2026, 11, 28, 13, 0, 0, 0, paris)
	w.Record(auditlog.Record{Time: at, Username: "A\xff", CanonicalUsername: "a\xff" + strings.Repeat("é", 200),
		Locked: true, Count: 12, Until: at.Add(time.Second)})
	w.Record(auditlog.Record{Time: at.Add(time.Minute), Username: "neg", Count: -5})
	flush(t, w)
	got, err := e.sink.Query(context.Background(), auditlog.Filter{})
	if err != nil || len(got) != 2 {
		t.Fatalf("Query = %v, %v", got, err)
	}
	if r := got[0]; r.Count != 0 || r.Attempts() != 1 {
		t.Errorf("negative count stored as %d", r.Count)
	}
	r := got[1]
	if !strings.HasPrefix(r.CanonicalUsername, "a\uFFFD") || len(r.CanonicalUsername) > auditlog.MaxUsername {
		t.Errorf("CanonicalUsername %q (%d bytes): want U+FFFD and at most %d bytes", r.CanonicalUsername, len(r.CanonicalUsername), auditlog.MaxUsername)
	}
	if r.Count != 12 || !r.Until.Equal(at.Add(time.Second)) || r.Until.Location() != time.UTC {
		t.Errorf("Count %d, Until %v; want 12 and the time in UTC", r.Count, r.Until)
	}
	if got, _ := e.sink.Query(context.Background(), auditlog.Filter{Username: r.CanonicalUsername}); len(got) != 1 {
		t.Errorf("the record is not found by its canonical name")
	}
}
