package auditlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
)

// BenchmarkRecord measures Record, the call on the login path, with a
// healthy sink and with a dead one (every write fails, records go to the
// spool on disk).
func BenchmarkRecord(b *testing.B) {
	for _, dead := range []bool{false, true} {
		name := "healthy"
		if dead {
			name = "dead"
		}
		b.Run(name, func(b *testing.B) {
			e := newFileEnv(b)
			w := newWriter(b, e.sink, auditlog.WriterOptions{SpoolMaxBytes: 4 << 30})
			if dead {
				e.down(b)
			}
			r := record(1)
			r.Time = time.Now()
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
