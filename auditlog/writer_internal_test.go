package auditlog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memSink is an in-memory Sink for the package's internal tests (the real
// sinks import this package). failing makes every Write fail.
type memSink struct {
	failing atomic.Bool
	mu      sync.Mutex
	recs    map[string]Record
}

func (m *memSink) Write(ctx context.Context, rs []Record) error {
	if m.failing.Load() {
		return ErrUnavailable
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recs == nil {
		m.recs = map[string]Record{}
	}
	for _, r := range rs {
		m.recs[r.ID] = r
	}
	return nil
}
func (m *memSink) Query(context.Context, Filter) ([]Record, error)        { return nil, nil }
func (m *memSink) DeleteBefore(context.Context, time.Time) (int64, error) { return 0, nil }
func (m *memSink) Close() error                                           { return nil }
func (m *memSink) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestWriter(t *testing.T, sink Sink, dir string) (*Writer, *lockedBuf) {
	t.Helper()
	buf := &lockedBuf{}
	w, err := NewWriter(sink, WriterOptions{SpoolDir: dir, RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return w, buf
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriterRetriesOnItsOwn: without Flush, the retry timer brings the
// spool to a sink that is back.
func TestWriterRetriesOnItsOwn(t *testing.T) {
	sink := &memSink{}
	sink.failing.Store(true)
	w, buf := newTestWriter(t, sink, t.TempDir())
	for _, r := range mkRecords(10) {
		w.Record(r)
	}
	waitFor(t, "three failed attempts", func() bool { return w.Stats().SinkErrors >= 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := w.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush with the sink down = %v, want DeadlineExceeded", err)
	}
	sink.failing.Store(false)
	waitFor(t, "delivery", func() bool { return sink.len() == 10 })
	// The writer logs the recovery just after the sink has stored the
	// batch: wait for the line rather than race it.
	waitFor(t, "the recovery logged", func() bool { return strings.Contains(buf.String(), "audit sink is back") })
	if !strings.Contains(buf.String(), "audit sink is back") || !strings.Contains(buf.String(), "still failing") {
		t.Errorf("log: %s", buf.String())
	}
}

// TestWriterOnlyCorruptSpool: a spool holding nothing decodable settles at
// zero pending.
func TestWriterOnlyCorruptSpool(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, segName(1)), []byte("{torn\n"), 0o600)
	sink := &memSink{}
	w, buf := newTestWriter(t, sink, dir)
	flushCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(flushCtx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Corrupt != 1 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(buf.String(), "skipped undecodable") {
		t.Errorf("log: %s", buf.String())
	}
}

func TestSpoolReadErrors(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, 1<<20, 1<<20)
	s.append(mkRecords(2), false)
	s.mu.Lock()
	syncClose(s.sealActiveLocked())
	s.mu.Unlock()
	seg := filepath.Join(dir, segName(s.sealed[0].seq))
	os.Remove(seg)
	os.Symlink(seg, seg) // ELOOP on open
	if _, err := s.next(5); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Errorf("next on a symlink loop = %v", err)
	}
	// A segment that fails to read (here: a directory) is retried from its
	// delivered position once it reads again.
	os.Remove(seg)
	s.sealed[0].size = 0
	s3 := openTestSpool(t, t.TempDir(), 1<<20, 1<<20)
	in := mkRecords(4)
	s3.append(in, false)
	s3.mu.Lock()
	syncClose(s3.sealActiveLocked())
	s3.mu.Unlock()
	first, _ := s3.next(1)
	s3.ack()
	seg3 := filepath.Join(s3.dir, segName(s3.sealed[0].seq))
	s3.cur.f.Close()
	s3.cur = nil
	os.Rename(seg3, seg3+".bak")
	os.Mkdir(seg3, 0o700)
	if _, err := s3.next(5); err == nil {
		t.Error("next on a directory succeeded")
	}
	os.Remove(seg3)
	os.Rename(seg3+".bak", seg3)
	rest := drain(t, s3)
	if len(first) != 1 || len(rest) != 3 || rest[0].ID != in[1].ID {
		t.Errorf("after a read error: %d + %d records, want 1 + 3 in order", len(first), len(rest))
	}
	// A record that cannot be spooled: the segment file is read-only.
	s2 := openTestSpool(t, t.TempDir(), 1<<20, 1<<20)
	s2.append(mkRecords(1), false)
	s2.mu.Lock()
	name := s2.active.Name()
	s2.active.Close()
	s2.active, _ = os.Open(name)
	s2.mu.Unlock()
	if err := s2.append(mkRecords(1), true); err == nil {
		t.Error("append to a read-only file succeeded")
	}
	if s2.active != nil {
		t.Error("a failed append left its segment active")
	}
}
