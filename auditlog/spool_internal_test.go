package auditlog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mkRecords(n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{ID: NewID(time.Now()), Time: time.Now().UTC(), IP: "192.0.2.1"}
	}
	return out
}

func openTestSpool(t *testing.T, dir string, max, seg int64) *spool {
	t.Helper()
	s, err := openSpool(dir, max, seg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// drain reads and acknowledges everything.
func drain(t *testing.T, s *spool) []Record {
	t.Helper()
	var out []Record
	for {
		recs, err := s.next(3)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		if err := s.ack(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolOrderAcrossSegments(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), 1<<20, 500)
	in := mkRecords(20)
	for i := 0; i < len(in); i += 4 {
		if err := s.append(in[i:i+4], i%8 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.sealed) < 2 {
		t.Errorf("%d sealed segments, want several (segment bound 500 bytes)", len(s.sealed))
	}
	// Same batch again until ack.
	a, _ := s.next(3)
	b, _ := s.next(3)
	if len(a) != 3 || a[0].ID != b[0].ID {
		t.Fatalf("next without ack returned a different batch")
	}
	if err := s.ack(); err != nil {
		t.Fatal(err)
	}
	out := append(a, drain(t, s)...)
	if len(out) != len(in) {
		t.Fatalf("got %d records back, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i].ID != in[i].ID {
			t.Fatalf("record %d out of order", i)
		}
	}
	if s.pending.Load() != 0 || s.total.Load() != 0 {
		t.Errorf("pending %d, bytes %d after draining", s.pending.Load(), s.total.Load())
	}
	if err := s.ack(); err != nil { // nothing in flight
		t.Error(err)
	}
}

func TestSpoolReadPos(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, 1<<20, 1<<20)
	seg := segment{seq: 5, size: 100}
	for body, want := range map[string]int64{"42": 42, "x": 0, "-1": 0, "101": 0, " 7\n": 7} {
		os.WriteFile(filepath.Join(dir, posName(5)), []byte(body), 0o600)
		if got := s.readPos(seg); got != want {
			t.Errorf("readPos(%q) = %d, want %d", body, got, want)
		}
	}
}

func TestSpoolErrors(t *testing.T) {
	t.Run("segment is a directory", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, segName(1)), 0o700)
		if _, err := openSpool(dir, 1<<20, 1<<20); err == nil {
			t.Error("openSpool succeeded")
		}
	})
	t.Run("lock is a directory", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "lock"), 0o700)
		if _, err := openSpool(dir, 1<<20, 1<<20); err == nil {
			t.Error("openSpool succeeded")
		}
	})
	t.Run("full", func(t *testing.T) {
		s := openTestSpool(t, t.TempDir(), 100, 1<<20)
		if err := s.append(mkRecords(5), false); !errors.Is(err, ErrSpoolFull) || !strings.Contains(err.Error(), "SpoolMaxBytes") {
			t.Errorf("append over the bound = %v", err)
		}
		if err := s.append(nil, false); err != nil {
			t.Errorf("empty append = %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		s := openTestSpool(t, t.TempDir(), 1<<20, 1<<20)
		s.append(mkRecords(1), false) // active segment open
		s.next(1)                     // reader open
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		if err := s.close(); err != nil {
			t.Errorf("second close = %v", err)
		}
		if err := s.append(mkRecords(1), false); !errors.Is(err, ErrClosed) {
			t.Errorf("append after close = %v", err)
		}
	})
	t.Run("segment name taken", func(t *testing.T) {
		dir := t.TempDir()
		s := openTestSpool(t, dir, 1<<20, 1<<20)
		os.Mkdir(filepath.Join(dir, segName(s.nextSeq)), 0o700)
		if err := s.append(mkRecords(1), false); err == nil {
			t.Error("append onto an existing name succeeded")
		}
	})
	t.Run("segment vanished", func(t *testing.T) {
		dir := t.TempDir()
		s := openTestSpool(t, dir, 1<<20, 200)
		in := mkRecords(6)
		for _, r := range in {
			s.append([]Record{r}, false)
		}
		s.mu.Lock()
		syncClose(s.sealActiveLocked())
		first := s.sealed[0]
		s.mu.Unlock()
		os.Remove(filepath.Join(dir, segName(first.seq)))
		out := drain(t, s)
		if len(out) == 0 || len(out) >= len(in) || s.corrupt.Load() != 1 {
			t.Errorf("%d records after losing a segment, corrupt %d", len(out), s.corrupt.Load())
		}
	})
	t.Run("position not writable", func(t *testing.T) {
		dir := t.TempDir()
		s := openTestSpool(t, dir, 1<<20, 1<<20)
		s.append(mkRecords(5), false)
		recs, err := s.next(2)
		if err != nil || len(recs) != 2 {
			t.Fatal(recs, err)
		}
		os.Mkdir(filepath.Join(dir, posName(s.cur.seg.seq)+".tmp"), 0o700)
		if err := s.ack(); err == nil {
			t.Error("ack with an unwritable position file succeeded")
		}
		os.Remove(filepath.Join(dir, posName(s.cur.seg.seq)+".tmp"))
		os.Mkdir(filepath.Join(dir, posName(s.cur.seg.seq)), 0o700)
		os.WriteFile(filepath.Join(dir, posName(s.cur.seg.seq), "x"), nil, 0o600)
		s.next(2)
		if err := s.ack(); err == nil {
			t.Error("ack renaming onto a directory succeeded")
		}
	})
}

func TestSpoolUnencodable(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), 1<<20, 1<<20)
	bad := Record{ID: "x", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := s.append([]Record{bad}, false); err == nil {
		t.Error("append of an unencodable record succeeded")
	}
}
