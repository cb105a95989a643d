package auditlog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-defender/defender/auditlog"
	_ "github.com/go-defender/defender/auditlog/file" // the file:// scheme
)

func ExampleNewWriter() {
	dir, _ := os.MkdirTemp("", "auditlog-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	sink, err := auditlog.Open(ctx, "file://"+filepath.Join(dir, "attempts.jsonl"))
	if err != nil {
		panic(err)
	}
	defer sink.Close()
	w, err := auditlog.NewWriter(sink, auditlog.WriterOptions{SpoolDir: filepath.Join(dir, "spool")})
	if err != nil {
		panic(err)
	}

	// The engine calls Record once per attempt; it never blocks.
	w.Record(auditlog.Record{IP: "203.0.113.7", Username: "alice", Path: "/login/", Locked: true})
	w.Record(auditlog.Record{IP: "203.0.113.7", Username: "alice", Path: "/login/", Success: true})

	// At shutdown: deliver, or persist to the spool for the next run.
	if err := w.Close(ctx); err != nil {
		panic(err)
	}
	st := w.Stats()
	fmt.Println("delivered:", st.Delivered, "dropped:", st.Dropped)

	recent, _ := sink.Query(ctx, auditlog.Filter{Username: "alice", Limit: 10})
	for _, r := range recent {
		fmt.Println(r.IP, r.Username, "success:", r.Success, "locked:", r.Locked)
	}
	// Output:
	// delivered: 2 dropped: 0
	// 203.0.113.7 alice success: true locked: false
	// 203.0.113.7 alice success: false locked: true
}

func ExampleCleanup() {
	dir, _ := os.MkdirTemp("", "auditlog-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	sink, _ := auditlog.Open(ctx, "file://"+filepath.Join(dir, "attempts.jsonl"))
	defer sink.Close()

	now := time.Now()
	sink.Write(ctx, []auditlog.Record{
		{ID: auditlog.NewID(now), Time: now.Add(-48 * time.Hour), Username: "old"},
		{ID: auditlog.NewID(now), Time: now.Add(-time.Hour), Username: "recent"},
	})
	// `defender cleanup` with DEFENDER_ACCESS_ATTEMPT_EXPIRATION=24.
	n, err := auditlog.Cleanup(ctx, sink, 24*time.Hour, nil)
	fmt.Println(n, err)
	left, _ := sink.Query(ctx, auditlog.Filter{})
	fmt.Println(len(left), left[0].Username)
	// Output:
	// 1 <nil>
	// 1 recent
}
