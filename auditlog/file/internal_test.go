package file

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
)

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(dir, Options{}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("New on a directory = %v", err)
	}
	// A file whose tail holds a line longer than the scanner allows.
	long := filepath.Join(dir, "long.jsonl")
	os.WriteFile(long, bytes.Repeat([]byte("x"), TailScanBytes), 0o600)
	if _, err := New(long, Options{}); err == nil {
		t.Error("New on a file with a 16 MiB line succeeded")
	}
	// Longer than the tail: the tail holds no line start at all.
	longer := filepath.Join(dir, "longer.jsonl")
	os.WriteFile(longer, bytes.Repeat([]byte("x"), TailScanBytes+10), 0o600)
	s, err := New(longer, Options{})
	if err != nil {
		t.Fatalf("New on a file with no newline in its tail: %v", err)
	}
	defer s.Close()
	if !s.broken {
		t.Error("a file not ending in a newline was not marked")
	}
	if _, err := s.Query(context.Background(), auditlog.Filter{}); err == nil {
		t.Error("Query over a line too long succeeded")
	}
	// A path that is a symlink loop.
	loop := filepath.Join(dir, "loop.jsonl")
	os.Symlink(loop, loop)
	if _, err := rewrite(loop, time.Now()); err == nil {
		t.Error("rewrite of a symlink loop succeeded")
	}
}

func TestWriteErrorThenRecovery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jsonl")
	s, err := New(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r1 := auditlog.Record{ID: auditlog.NewID(now), Time: now}
	// Swap in a read-only handle on the same file: write(2) fails.
	s.f.Close()
	s.f, _ = os.Open(path)
	if err := s.Write(context.Background(), []auditlog.Record{r1}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Fatalf("Write on a read-only descriptor = %v", err)
	}
	if !s.broken || s.seen.has(r1.ID) {
		t.Error("a failed write must mark the file broken and not remember the IDs")
	}
	s.f.Close()
	s.f, _ = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err := s.Write(context.Background(), []auditlog.Record{r1}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if raw[0] != '\n' {
		t.Errorf("the write after a failure does not start on a new line: %q", raw)
	}
	// Close after a failed reopen (no open file).
	os.Rename(dir, dir+".away")
	if err := s.Write(context.Background(), []auditlog.Record{{ID: "x", Time: now}}); err == nil {
		t.Error("Write with the directory gone succeeded")
	}
	if s.f != nil {
		t.Error("a failed reopen left a file open")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close with no open file = %v", err)
	}
}

func TestMoreErrors(t *testing.T) {
	dir := t.TempDir()
	s, err := New(filepath.Join(dir, "a.jsonl"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// time.Time cannot encode years past 9999.
	bad := auditlog.Record{ID: "x", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := s.Write(context.Background(), []auditlog.Record{bad}); err == nil {
		t.Error("Write of an unencodable record succeeded")
	}
	// Query of a path that cannot be opened.
	loop := filepath.Join(dir, "loop.jsonl")
	s2, _ := New(loop, Options{})
	defer s2.Close()
	os.Remove(loop)
	os.Symlink(loop, loop)
	if _, err := s2.Query(context.Background(), auditlog.Filter{}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("Query of a symlink loop = %v", err)
	}
	// DeleteBefore cannot create its temporary file: the name is too long.
	long := filepath.Join(dir, string(bytes.Repeat([]byte("n"), 250)))
	s3, err := New(long, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	s3.Write(context.Background(), []auditlog.Record{{ID: "old", Time: time.Now().Add(-time.Hour)}})
	if _, err := s3.DeleteBefore(context.Background(), time.Now()); err == nil {
		t.Error("DeleteBefore without room for a temporary name succeeded")
	}
}

// TestReplacedWhileLocking: a file replaced while Write waited for its lock
// is not written to; Write moves to the new file, and gives up with an error
// if the file keeps being replaced.
func TestReplacedWhileLocking(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jsonl")
	s, err := New(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	replace := func(*Sink) {
		os.Rename(path, path+".old")
		os.WriteFile(path, nil, 0o600)
	}
	times := 0
	afterLock = func(s *Sink) {
		if times < 2 {
			replace(s)
		}
		times++
	}
	defer func() { afterLock = nil }()
	now := time.Now()
	if err := s.Write(context.Background(), []auditlog.Record{{ID: "a", Time: now}}); err != nil {
		t.Fatal(err)
	}
	if old, _ := os.ReadFile(path + ".old"); len(old) != 0 {
		t.Errorf("the replaced file was written to: %q", old)
	}
	if cur, _ := os.ReadFile(path); !bytes.Contains(cur, []byte(`"id":"a"`)) {
		t.Errorf("the record is not in the current file: %q", cur)
	}
	afterLock = replace
	if err := s.Write(context.Background(), []auditlog.Record{{ID: "b", Time: now}}); !errors.Is(err, auditlog.ErrUnavailable) {
		t.Errorf("Write on a file replaced forever = %v, want ErrUnavailable", err)
	}
}
