package mongo_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/mongo"
	"github.com/go-defender/defender/internal/testserver"
)

// BenchmarkRecord measures the login path's audit call, Writer.Record, in
// front of a MongoDB sink that is healthy and one whose server is stopped.
func BenchmarkRecord(b *testing.B) {
	srv := testserver.StartMongoServer(b)
	run := 0
	for _, dead := range []bool{false, true} {
		name := "healthy"
		if dead {
			name = "dead"
		}
		b.Run(name, func(b *testing.B) {
			run++
			s := open(b, srv.URI, mongo.Options{Collection: fmt.Sprintf("bench_%d", run)})
			w, err := auditlog.NewWriter(s, auditlog.WriterOptions{SpoolDir: filepath.Join(b.TempDir(), "spool"), SpoolMaxBytes: 4 << 30,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			if dead {
				srv.Stop()
				defer srv.Start()
			}
			r := auditlog.Record{IP: "203.0.113.7", Username: "alice", Path: "/login/", Time: time.Now()}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.ID = ""
				w.Record(r)
			}
			b.StopTimer()
			if st := w.Stats(); st.Dropped != 0 {
				b.Fatalf("dropped %d", st.Dropped)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			w.Close(ctx)
		})
	}
}
