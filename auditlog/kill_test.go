package auditlog_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
)

const (
	childSpoolEnv = "AUDITLOG_TEST_CHILD_SPOOL"
	childPathEnv  = "AUDITLOG_TEST_CHILD_PATH"
)

// TestKillChild is the child process of TestWriterKilledMidFlush: it
// replays a spool into a file sink, one record per batch, fsyncing each,
// until it is killed. Run on its own it does nothing.
func TestKillChild(t *testing.T) {
	spool, path := os.Getenv(childSpoolEnv), os.Getenv(childPathEnv)
	if spool == "" || path == "" {
		return // not the child
	}
	sink, err := file.New(path, file.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auditlog.NewWriter(sink, auditlog.WriterOptions{SpoolDir: spool, BatchSize: 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute) // killed long before
	t.Fatal("child was not killed")
}

// TestWriterKilledMidFlush: 10,000 records are spooled (sink down), a
// child process replays them and is killed with SIGKILL in the middle, a
// new writer finishes the job: nothing lost, nothing duplicated.
func TestWriterKilledMidFlush(t *testing.T) {
	const total = 10000
	e := newFileEnv(t)
	spool := filepath.Join(t.TempDir(), "spool")
	w := newWriter(t, e.sink, auditlog.WriterOptions{SpoolDir: spool})
	e.down(t)
	var ids []string
	for i := 0; i < total; i++ {
		r := record(i)
		r.ID = auditlog.NewID(time.Now())
		ids = append(ids, r.ID)
		w.Record(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Pending != total {
		t.Fatalf("spooled %d records, want %d (stats %+v)", st.Pending, total, st)
	}
	e.up(t)
	e.sink.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childSpoolEnv+"="+spool, childPathEnv+"="+e.path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	// Kill it once it has delivered a few hundred records.
	deadline := time.Now().Add(time.Minute)
	for {
		if fi, err := os.Stat(e.path); err == nil && fi.Size() > 300*100 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("child exited before it was killed: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("child delivered nothing within a minute")
		}
		time.Sleep(200 * time.Microsecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	before := len(countIDs(t, e.path))
	t.Logf("child killed (SIGKILL) after delivering %d of %d records", before, total)
	if before <= 0 || before >= total {
		t.Fatalf("the child delivered %d records: not killed mid-flush", before)
	}

	sink, err := file.New(e.path, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	w2 := newWriter(t, sink, auditlog.WriterOptions{SpoolDir: spool})
	flush(t, w2)
	if st := w2.Stats(); st.Delivered < uint64(total-before) {
		t.Errorf("restarted writer delivered %d, want at least %d", st.Delivered, total-before)
	}
	if err := w2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted writer: %+v", w2.Stats())
	exactlyOnce(t, countIDs(t, e.path), ids)
	if ents, _ := os.ReadDir(spool); len(ents) != 1 { // only the lock file
		t.Errorf("spool not empty after the replay: %d entries", len(ents))
	}
}
