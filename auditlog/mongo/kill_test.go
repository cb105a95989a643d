package mongo_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/mongo"
)

const (
	childSpoolEnv = "AUDITLOG_MONGO_CHILD_SPOOL"
	childURIEnv   = "AUDITLOG_MONGO_CHILD_URI"
)

// TestKillChild is the child process of TestWriterKilledMidFlush: it
// replays a spool into MongoDB, one record per batch, until it is killed.
// Run on its own it does nothing.
func TestKillChild(t *testing.T) {
	spool, uri := os.Getenv(childSpoolEnv), os.Getenv(childURIEnv)
	if spool == "" || uri == "" {
		return // not the child
	}
	s, err := mongo.New(context.Background(), uri, mongo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auditlog.NewWriter(s, auditlog.WriterOptions{SpoolDir: spool, BatchSize: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute) // killed long before
	t.Fatal("child was not killed")
}

// TestWriterKilledMidFlush: 10,000 records are spooled while the server is
// down; a child process replays them into MongoDB and is killed with
// SIGKILL in the middle; a new writer finishes: nothing lost, nothing
// duplicated.
func TestWriterKilledMidFlush(t *testing.T) {
	const total = 10000
	srv := testserverStart(t)
	spool := filepath.Join(t.TempDir(), "spool")
	srv.Stop()
	s := open(t, srv.URI, mongo.Options{Timeout: time.Minute}) // reading 10,000 records back can be slow on a loaded machine
	w, err := auditlog.NewWriter(s, auditlog.WriterOptions{SpoolDir: spool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, total)
	for i := 0; i < total; i++ {
		r := auditlog.Record{ID: auditlog.NewID(time.Now()), Time: time.Now(), IP: "192.0.2.1", Username: "u"}
		ids = append(ids, r.ID)
		w.Record(r)
	}
	c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := w.Close(c); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Pending != total {
		t.Fatalf("spooled %d, want %d", st.Pending, total)
	}
	srv.Start()

	client, err := driver.Connect(options.Client().ApplyURI(srv.URI))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := srv.URI[strings.LastIndex(srv.URI, "/")+1:]
	coll := client.Database(db).Collection(mongo.DefaultCollection)
	count := func() int64 {
		n, err := coll.CountDocuments(ctx(t), bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childSpoolEnv+"="+spool, childURIEnv+"="+srv.URI)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(time.Minute)
	for count() < 300 {
		select {
		case err := <-exited:
			t.Fatalf("child exited before it was killed: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("child delivered nothing within a minute")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	before := count()
	t.Logf("child killed (SIGKILL) after delivering %d of %d records", before, total)
	if before >= total {
		t.Fatal("not killed mid-flush")
	}

	w2, err := auditlog.NewWriter(s, auditlog.WriterOptions{SpoolDir: spool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	fc, cancel2 := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel2()
	if err := w2.Flush(fc); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(fc); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted writer: %+v", w2.Stats())
	got, err := s.Query(ctx(t), auditlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range got {
		seen[r.ID]++
	}
	missing := 0
	for _, id := range ids {
		if seen[id] == 0 {
			missing++
		}
	}
	t.Logf("%d records sent, %d stored, %d distinct, %d missing", total, len(got), len(seen), missing)
	if missing != 0 || len(got) != total || len(seen) != total {
		t.Error("want every record exactly once")
	}
}
