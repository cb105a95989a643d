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

func ExampleNewCoalescer() {
	dir, _ := os.MkdirTemp("", "auditlog-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	sink, _ := auditlog.Open(ctx, "file://"+filepath.Join(dir, "attempts.jsonl"))
	defer sink.Close()
	w, _ := auditlog.NewWriter(sink, auditlog.WriterOptions{SpoolDir: filepath.Join(dir, "spool")})

	// The engine records into the Coalescer, which hands records to the
	// Writer: locked attempts of one identity, one record per second.
	c, err := auditlog.NewCoalescer(w, time.Second, nil)
	if err != nil {
		panic(err)
	}

	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	// A blocked client hammers the login: 500 locked attempts in 0.5 s,
	// typed in several ways that all count as alice.
	for i := 0; i < 500; i++ {
		typed := []string{"alice", "ALICE", "ａｌｉｃｅ"}[i%3]
		c.Record(auditlog.Record{Time: t0.Add(time.Duration(i) * time.Millisecond), IP: "203.0.113.7",
			Username: typed, CanonicalUsername: "alice", Locked: true})
	}
	// Failures and successes are never coalesced nor delayed.
	c.Record(auditlog.Record{Time: t0.Add(2 * time.Second), IP: "192.0.2.1", Username: "Alice", CanonicalUsername: "alice", Success: true})

	// At shutdown: the Coalescer first (it emits its open windows), then the
	// Writer (it delivers them).
	c.Close(ctx)
	w.Close(ctx)

	recent, _ := sink.Query(ctx, auditlog.Filter{Username: "alice"})
	for _, r := range recent {
		fmt.Printf("%s %s locked:%v attempts:%d from %s to %s\n", r.IP, r.Username, r.Locked, r.Attempts(),
			r.Time.Format("15:04:05.000"), r.Until.Format("15:04:05.000"))
	}
	fmt.Println("locked attempts counted:", c.Stats().Locked)
	// Output:
	// 192.0.2.1 Alice locked:false attempts:1 from 12:00:02.000 to 00:00:00.000
	// 203.0.113.7 alice locked:true attempts:500 from 12:00:00.000 to 12:00:00.499
	// locked attempts counted: 500
}
