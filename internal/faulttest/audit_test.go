package faulttest

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/mongo"
	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/internal/testserver"
)

// TestAuditMongoOutage writes the audit log to MongoDB (FerretDB) through
// a fault proxy that is cut during the middle third of 300 logins: the
// logins are as fast as before (the audit is off the critical path), and
// after recovery every record is in the database exactly once.
func TestAuditMongoOutage(t *testing.T) {
	m := testserver.StartMongoServer(t)
	f := newFault(t, m.Addr)
	u, err := url.Parse(m.URI)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = f.Addr
	q := u.Query()
	q.Set("serverSelectionTimeoutMS", "500")
	q.Set("connectTimeoutMS", "500")
	u.RawQuery = q.Encode()
	sink, err := mongo.New(ctxBG, u.String(), mongo.Options{Timeout: time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	w, err := auditlog.NewWriter(sink, auditlog.WriterOptions{
		SpoolDir:     t.TempDir(),
		QueueSize:    16, // small: the outage's records go to the disk spool
		WriteTimeout: time.Second,
		RetryMin:     50 * time.Millisecond,
		RetryMax:     300 * time.Millisecond,
		Logger:       quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(ctxBG, 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
		_ = sink.Close()
	})
	st := memoryKit(t).store
	cfg := defender.DefaultConfig()
	cfg.CachePrefix = uniquePrefix()
	d, err := defender.New(st, cfg, &defender.Options{Audit: w, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	app := newLoginApp(t, d)

	const n = 300
	phase := make([][]time.Duration, 3)
	for i := 0; i < n; i++ {
		switch i {
		case n / 3:
			f.cut()
		case 2 * n / 3:
			f.restore()
		}
		rec, el := app.post(fmt.Sprintf("10.9.%d.%d", i/256, i%256), fmt.Sprintf("user%03d", i), "wrong")
		if rec.Code != 401 {
			t.Fatalf("login %d: status %d", i, rec.Code)
		}
		phase[i*3/n] = append(phase[i*3/n], el)
	}
	var worst time.Duration
	for i, p := range phase {
		slices.Sort(p)
		worst = max(worst, p[len(p)-1])
		t.Logf("%s: median login %v, slowest %v", []string{"before", "during the outage", "after"}[i], p[len(p)/2], p[len(p)-1])
	}
	if worst > storeTimeout+margin {
		t.Errorf("slowest login %v with the audit sink down, bound %v", worst, storeTimeout+margin)
	}
	ctx, cancel := context.WithTimeout(ctxBG, 60*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (stats %+v)", err, w.Stats())
	}
	stats := w.Stats()
	t.Logf("writer stats: %+v", stats)
	if stats.Dropped != 0 || stats.Delivered != n {
		t.Errorf("stats %+v: want %d delivered, none dropped", stats, n)
	}
	if stats.Spooled == 0 || stats.SinkErrors == 0 {
		t.Errorf("stats %+v: the outage was not seen (nothing spooled or no sink error)", stats)
	}
	recs, err := sink.Query(ctx, auditlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Username]++
	}
	for i := 0; i < n; i++ {
		if c := seen[fmt.Sprintf("user%03d", i)]; c != 1 {
			t.Errorf("user%03d: %d records, want exactly 1", i, c)
		}
	}
	if len(recs) != n {
		t.Errorf("%d records in the database, want %d", len(recs), n)
	}
}
