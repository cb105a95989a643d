package auditlog_test

import (
	"context"
	"fmt"
	"sync/atomic"
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

// discard is a Recorder that drops everything (the benchmarks measure the
// Coalescer alone).
type discard struct{}

func (discard) Record(auditlog.Record) {}

// BenchmarkCoalescerLocked measures Coalescer.Record on the login path of
// a locked flood. repeat: a locked record of an identity whose window is
// open (the flood's case; it must not allocate). parallel: the same from
// every P, on one identity each. new-identity: every record opens a window
// (past MaxOpen, the oldest is emitted). passthrough: a failure, handed
// straight to the next Recorder.
func BenchmarkCoalescerLocked(b *testing.B) {
	now := time.Now()
	flood := auditlog.Record{Time: now, IP: "203.0.113.7", Username: "Alice", CanonicalUsername: "alice",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", Path: "/login/",
		Accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", Locked: true}
	newC := func(b *testing.B) *auditlog.Coalescer {
		c, err := auditlog.NewCoalescer(discard{}, time.Hour, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	b.Run("repeat", func(b *testing.B) {
		c := newC(b)
		c.Record(flood)
		b.ReportAllocs()
		for b.Loop() {
			c.Record(flood)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c := newC(b)
		var id atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := flood
			r.IP = fmt.Sprintf("203.0.113.%d", id.Add(1))
			for pb.Next() {
				c.Record(r)
			}
		})
	})
	b.Run("new-identity", func(b *testing.B) {
		c := newC(b)
		ips := make([]string, 1<<16)
		for i := range ips {
			ips[i] = fmt.Sprintf("10.0.%d.%d", i>>8, i&255)
		}
		r := flood
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r.IP = ips[i&(len(ips)-1)]
			i++
			c.Record(r)
		}
	})
	b.Run("passthrough", func(b *testing.B) {
		c := newC(b)
		r := flood
		r.Locked = false
		b.ReportAllocs()
		for b.Loop() {
			c.Record(r)
		}
	})
}
