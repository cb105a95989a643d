package conformance

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
)

// This file proves that RunSink has teeth: a reference sink (a slice under
// a mutex) passes it, and deliberately broken variants fail the subtests of
// the rule they break.

type sinkFlaw int

const (
	noDedupe sinkFlaw = 1 << iota
	oldestFirst
	ignoreLimit
	deleteAtCutoff
	prefixUsername
	racyWrite
	openAfterClose
	secondPrecision
	writeFails
	queryFails
	startsNonEmpty
	deleteFails
	queryTwice
	closeFails
	deleteOvercounts
	dropCount         // stores every record as one attempt
	dropUntil         // forgets the last attempt's time
	dropCanonical     // forgets the canonical username
	typedUsernameOnly // Filter.Username compared with the typed name (before canonical names)
	noTypedFallback   // Filter.Username compared with CanonicalUsername only, old records lost
	typedOrCanonical  // Filter.Username matches either name, on any record
	deleteByUntil     // DeleteBefore by the last attempt of a coalesced record
	limitByAttempts   // Limit counted in attempts, not records
)

type refSink struct {
	flaws  sinkFlaw
	mu     sync.Mutex
	recs   []auditlog.Record
	closed bool
}

func (s *refSink) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed && s.flaws&openAfterClose == 0 {
		return auditlog.ErrClosed
	}
	return nil
}

func (s *refSink) Write(ctx context.Context, rs []auditlog.Record) error {
	if s.flaws&writeFails != 0 && len(rs) > 0 {
		return auditlog.ErrUnavailable
	}
	if s.flaws&racyWrite != 0 {
		snapshot := func() []auditlog.Record {
			s.mu.Lock()
			defer s.mu.Unlock()
			return append([]auditlog.Record(nil), s.recs...)
		}()
		time.Sleep(time.Millisecond)
		s.mu.Lock()
		s.recs = append(snapshot, rs...)
		s.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
outer:
	for _, r := range rs {
		if s.flaws&noDedupe == 0 {
			for _, have := range s.recs {
				if have.ID == r.ID {
					continue outer
				}
			}
		}
		if s.flaws&secondPrecision != 0 {
			r.Time = r.Time.Truncate(time.Second)
		}
		if s.flaws&dropCount != 0 {
			r.Count = 0
		}
		if s.flaws&dropUntil != 0 {
			r.Until = time.Time{}
		}
		if s.flaws&dropCanonical != 0 {
			r.CanonicalUsername = ""
		}
		s.recs = append(s.recs, r)
	}
	return nil
}

func (s *refSink) Query(ctx context.Context, f auditlog.Filter) ([]auditlog.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if s.flaws&queryFails != 0 {
		return nil, auditlog.ErrUnavailable
	}
	var out []auditlog.Record
	for _, r := range s.recs {
		m := f
		if s.flaws&prefixUsername != 0 && strings.HasPrefix(r.Username, f.Username) {
			m.Username = ""
		}
		if f.Username != "" && s.flaws&(typedUsernameOnly|noTypedFallback|typedOrCanonical) != 0 {
			var ok bool
			switch {
			case s.flaws&typedUsernameOnly != 0:
				ok = r.Username == f.Username
			case s.flaws&noTypedFallback != 0:
				ok = r.CanonicalUsername == f.Username
			case s.flaws&typedOrCanonical != 0:
				ok = r.Username == f.Username || r.CanonicalUsername == f.Username
			}
			if !ok {
				continue
			}
			m.Username = ""
		}
		if m.Match(r) {
			out = append(out, r)
		}
	}
	auditlog.SortNewestFirst(out)
	if s.flaws&oldestFirst != 0 {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	if f.Limit > 0 && len(out) > f.Limit && s.flaws&ignoreLimit == 0 {
		out = out[:f.Limit]
	}
	if f.Limit > 0 && s.flaws&limitByAttempts != 0 {
		var n int64
		for i, r := range out {
			if n += r.Attempts(); n > int64(f.Limit) {
				out = out[:i]
				break
			}
		}
	}
	if s.flaws&queryTwice != 0 {
		out = append(out, out...)
	}
	return out, nil
}

func (s *refSink) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if s.flaws&deleteFails != 0 {
		return 0, auditlog.ErrUnavailable
	}
	var keep []auditlog.Record
	for _, r := range s.recs {
		if r.Time.Before(t) || (s.flaws&deleteAtCutoff != 0 && r.Time.Equal(t)) {
			if s.flaws&deleteByUntil == 0 || r.Until.IsZero() || r.Until.Before(t) {
				continue
			}
		}
		keep = append(keep, r)
	}
	n := int64(len(s.recs) - len(keep))
	if s.flaws&deleteOvercounts != 0 {
		n = int64(len(s.recs)) // counts the kept records too
	}
	s.recs = keep
	return n, nil
}

func (s *refSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.flaws&closeFails != 0 {
		return auditlog.ErrUnavailable
	}
	return nil
}

func runRefSink(flaws sinkFlaw) *report {
	rec := newRecorder()
	rec.Run("", func(t tb) {
		runSink(t, func(tb) auditlog.Sink {
			s := &refSink{flaws: flaws}
			if flaws&startsNonEmpty != 0 {
				s.recs = []auditlog.Record{{ID: "left-over", Time: time.Now()}}
			}
			return s
		})
	})
	return rec.rep
}

func TestSinkReferencePasses(t *testing.T) {
	if rep := runRefSink(0); len(rep.failed()) > 0 {
		t.Errorf("the reference sink fails the suite:\n%s", rep)
	}
}

func TestSinkTeeth(t *testing.T) {
	cases := []struct {
		name string
		flaw sinkFlaw
		must map[string]string // subtest -> text of its message
	}{
		{"NoDedupe", noDedupe, map[string]string{"Idempotent": "one per ID"}},
		{"OldestFirst", oldestFirst, map[string]string{"Order": "newest first", "Limit": "keeps the newest"}},
		{"IgnoreLimit", ignoreLimit, map[string]string{"Limit": "Limit 1"}},
		{"DeleteAtCutoff", deleteAtCutoff, map[string]string{"DeleteBefore": "want 2"}},
		{"PrefixUsername", prefixUsername, map[string]string{"Filter/Username": "exact match"}},
		{"RacyWrite", racyWrite, map[string]string{"Concurrent": "missing"}},
		{"OpenAfterClose", openAfterClose, map[string]string{"Closed": "ErrClosed"}},
		{"SecondPrecision", secondPrecision, map[string]string{"RoundTrip": "every field"}},
		{"WriteFails", writeFails, map[string]string{"RoundTrip": "Write(2 records)", "Concurrent": "concurrent Write"}},
		{"QueryFails", queryFails, map[string]string{"Order": "Query("}},
		{"StartsNonEmpty", startsNonEmpty, map[string]string{"Empty": "want 0"}},
		{"DeleteFails", deleteFails, map[string]string{"Empty": "DeleteBefore on an empty sink", "DeleteBefore": "DeleteBefore:"}},
		{"QueryTwice", queryTwice, map[string]string{"Concurrent": "duplicated"}},
		{"CloseFails", closeFails, map[string]string{"Closed": "Close:"}},
		{"DeleteOvercounts", deleteOvercounts, map[string]string{"DeleteBefore": "DeleteBefore again"}},
		{"DropCount", dropCount, map[string]string{"RoundTrip": "Count, CanonicalUsername and Until", "Coalesced": "Count must be stored"}},
		{"DropUntil", dropUntil, map[string]string{"RoundTrip": "Count, CanonicalUsername and Until", "Coalesced": "coalesced records"}},
		{"DropCanonical", dropCanonical, map[string]string{"RoundTrip": "every field", "Filter/Canonical": "every spelling counted as alice"}},
		{"TypedUsernameOnly", typedUsernameOnly, map[string]string{"Filter/Canonical": "every spelling counted as alice", "Coalesced": "by canonical name"}},
		{"NoTypedFallback", noTypedFallback, map[string]string{"Filter/Canonical": "old records typed alice", "Filter/Username": "exact match"}},
		{"TypedOrCanonical", typedOrCanonical, map[string]string{"Filter/Canonical": "typed name ALICE"}},
		{"DeleteByUntil", deleteByUntil, map[string]string{"DeleteBefore/Coalesced": "by Time, not Until"}},
		{"LimitByAttempts", limitByAttempts, map[string]string{"Coalesced": "Limit counts records"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := runRefSink(c.flaw)
			t.Logf("failed: %q", rep.failed())
			for rule, text := range c.must {
				msgs, ok := rep.failures[rule]
				if !ok {
					t.Errorf("subtest %s passed, want it to fail; failures:\n%s", rule, rep)
					continue
				}
				if !strings.Contains(strings.Join(msgs, "\n"), text) {
					t.Errorf("subtest %s failed with %q, want a message holding %q", rule, msgs, text)
				}
			}
		})
	}
}

func TestRunSink(t *testing.T) {
	RunSink(t, func(t *testing.T) auditlog.Sink { return &refSink{} })
}

func TestRunSinkNilOpen(t *testing.T) {
	rec := newRecorder()
	rec.Run("", func(t tb) { runSink(t, nil) })
	if len(rec.rep.failed()) == 0 {
		t.Error("RunSink with a nil open function passed")
	}
	rec = newRecorder()
	rec.Run("", func(t tb) { runSink(t, func(tb) auditlog.Sink { return nil }) })
	if len(rec.rep.failed()) == 0 {
		t.Error("RunSink with an open function returning nil passed")
	}
}
