package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
)

// RunSink checks that the audit sinks open returns obey the auditlog.Sink
// contract: round trip of every field (Count, Until and CanonicalUsername
// of coalesced records included), newest-first order, exact-match filters
// (usernames that look like query operators, JSON, or contain quotes,
// newlines and non-ASCII are data), the username filter by canonical name
// with the fallback to the typed name for records without one, limits (in
// records, whatever their Count), deletion by age (a coalesced record by
// its Time), idempotent writes by ID and concurrent writers. open must return an empty
// sink each time it is called (the suite closes it when the subtest ends).
// Times are compared at millisecond precision, the coarsest a sink may
// keep.
func RunSink(t *testing.T, open func(t *testing.T) auditlog.Sink) {
	t.Helper()
	var o func(t tb) auditlog.Sink
	if open != nil {
		o = func(t tb) auditlog.Sink { return open(t.(stdT).T) }
	}
	runSink(stdT{t}, o)
}

// TrickyUsernames are usernames a sink must store and match as plain data.
var TrickyUsernames = []string{
	`{"$ne": null}`,
	`$where`,
	`$gt`,
	`a"b'c\d`,
	"line1\nline2\r\n{\"id\":\"fake\",\"username\":\"admin\"}",
	"tab\there",
	"Ünïcødé 名前 🙂",
	`.*`,
	`admin' OR '1'='1`,
	"<script>&amp;",
	"admin",
	"Admin",
	"admin ",
}

type sinkCheck struct {
	name string
	fn   func(t tb, s auditlog.Sink)
}

func runSink(t tb, open func(t tb) auditlog.Sink) {
	t.Helper()
	if open == nil {
		t.Fatalf("conformance: RunSink needs an open function")
		return
	}
	checks := []sinkCheck{
		{"Empty", sinkEmpty},
		{"RoundTrip", sinkRoundTrip},
		{"Order", sinkOrder},
		{"Filter/IP", sinkFilterIP},
		{"Filter/Username", sinkFilterUsername},
		{"Filter/Canonical", sinkFilterCanonical},
		{"Filter/Since", sinkFilterSince},
		{"Limit", sinkLimit},
		{"Coalesced", sinkCoalesced},
		{"DeleteBefore", sinkDeleteBefore},
		{"DeleteBefore/Coalesced", sinkDeleteCoalesced},
		{"Idempotent", sinkIdempotent},
		{"Concurrent", sinkConcurrent},
		{"Closed", sinkClosed},
	}
	for _, c := range checks {
		t.Run(c.name, func(t tb) {
			s := open(t)
			if s == nil {
				t.Fatalf("open returned a nil Sink")
				return
			}
			t.Cleanup(func() { _ = s.Close() })
			c.fn(t, s)
		})
	}
}

func sinkCtx(t tb) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// base is a fixed recent time (whole milliseconds).
func sinkBase() time.Time { return time.Now().UTC().Truncate(time.Second).Add(-time.Hour) }

func rec(at time.Time, ip, user string) auditlog.Record {
	return auditlog.Record{ID: auditlog.NewID(at), Time: at, IP: ip, Username: user,
		UserAgent: "conformance/1.0", Path: "/login/", Accept: "text/html"}
}

// norm makes records comparable across sinks: UTC, millisecond precision.
func norm(rs []auditlog.Record) []auditlog.Record {
	out := make([]auditlog.Record, len(rs))
	for i, r := range rs {
		r.Time = r.Time.UTC().Truncate(time.Millisecond)
		if !r.Until.IsZero() {
			r.Until = r.Until.UTC().Truncate(time.Millisecond)
		}
		out[i] = r
	}
	return out
}

// coalesced returns a record standing for n locked attempts of the
// canonical username canon (typed as typed), from at to at+span.
func coalesced(at time.Time, ip, typed, canon string, n int64, span time.Duration) auditlog.Record {
	r := rec(at, ip, typed)
	r.CanonicalUsername, r.Locked, r.Count, r.Until = canon, true, n, at.Add(span)
	return r
}

func write(t tb, s auditlog.Sink, rs ...auditlog.Record) {
	t.Helper()
	if err := s.Write(sinkCtx(t), rs); err != nil {
		t.Fatalf("Write(%d records): %v", len(rs), err)
	}
}

func query(t tb, s auditlog.Sink, f auditlog.Filter) []auditlog.Record {
	t.Helper()
	got, err := s.Query(sinkCtx(t), f)
	if err != nil {
		t.Fatalf("Query(%+v): %v", f, err)
	}
	return got
}

// wantRecords checks that got equals want, in order.
func wantRecords(t tb, what string, got, want []auditlog.Record) {
	t.Helper()
	g, w := norm(got), norm(want)
	if len(g) == 0 && len(w) == 0 {
		return
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: got %d records, want %d\n got: %s\nwant: %s", what, len(g), len(w), ids(g), ids(w))
	}
}

func ids(rs []auditlog.Record) string {
	s := ""
	for _, r := range rs {
		s += fmt.Sprintf("\n  %s %s %q %q", r.Time.Format(time.RFC3339Nano), r.ID, r.IP, r.Username)
		if r.CanonicalUsername != "" || r.Count != 0 || !r.Until.IsZero() {
			s += fmt.Sprintf(" canonical %q count %d until %s", r.CanonicalUsername, r.Count, r.Until.Format(time.RFC3339Nano))
		}
	}
	return s
}

// newestFirst returns a sorted copy.
func newestFirst(rs []auditlog.Record) []auditlog.Record {
	out := append([]auditlog.Record(nil), rs...)
	auditlog.SortNewestFirst(out)
	return out
}

func sinkEmpty(t tb, s auditlog.Sink) {
	if got := query(t, s, auditlog.Filter{}); len(got) != 0 {
		t.Errorf("a new sink returned %d records, want 0", len(got))
	}
	n, err := s.DeleteBefore(sinkCtx(t), time.Now())
	if err != nil || n != 0 {
		t.Errorf("DeleteBefore on an empty sink = %d, %v; want 0, nil", n, err)
	}
	write(t, s) // an empty batch is fine
}

func sinkRoundTrip(t tb, s auditlog.Sink) {
	at := sinkBase().Add(123 * time.Millisecond)
	r := auditlog.Record{ID: auditlog.NewID(at), Time: at, IP: "2001:db8::1", Username: "Ünïcødé \"user\"\n",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", Path: "/admin/login/?next=/x&y=1", Accept: "text/html,*/*;q=0.8",
		Success: true, Locked: true, FailMode: "local"}
	r2 := rec(at.Add(time.Millisecond), "192.0.2.1", "plain")
	r2.Refused = "ambiguous"
	// A coalesced record: its count, canonical name and last attempt.
	r3 := coalesced(at.Add(2*time.Millisecond), "203.0.113.7", "ＡＬＩＣＥ", "alice", 37, 987*time.Millisecond)
	r3.FailMode = "closed"
	write(t, s, r, r2)
	write(t, s, r3)
	wantRecords(t, "every field must come back as written (Count, CanonicalUsername and Until included; Refused too)",
		query(t, s, auditlog.Filter{}), []auditlog.Record{r3, r2, r})
}

func sinkOrder(t tb, s auditlog.Sink) {
	base := sinkBase()
	var all []auditlog.Record
	for i := 0; i < 30; i++ {
		all = append(all, rec(base.Add(time.Duration(i)*time.Second), "192.0.2.1", fmt.Sprintf("u%d", i)))
	}
	// Three records at the same instant: ordered by ID, descending.
	for i := 0; i < 3; i++ {
		all = append(all, rec(base.Add(10*time.Second), "192.0.2.2", fmt.Sprintf("same%d", i)))
	}
	shuffled := append([]auditlog.Record(nil), all...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	write(t, s, shuffled[:10]...)
	write(t, s, shuffled[10:]...)
	wantRecords(t, "Query must return newest first (time, then ID, descending)", query(t, s, auditlog.Filter{}), newestFirst(all))
}

func sinkFilterIP(t tb, s auditlog.Sink) {
	base := sinkBase()
	var a, b []auditlog.Record
	for i := 0; i < 5; i++ {
		a = append(a, rec(base.Add(time.Duration(i)*time.Second), "192.0.2.1", "x"))
		b = append(b, rec(base.Add(time.Duration(i)*time.Second+time.Millisecond), "192.0.2.10", "x"))
	}
	write(t, s, append(append([]auditlog.Record{}, a...), b...)...)
	wantRecords(t, "IP filter 192.0.2.1 (exact, not a prefix)", query(t, s, auditlog.Filter{IP: "192.0.2.1"}), newestFirst(a))
	wantRecords(t, "IP filter 192.0.2.10", query(t, s, auditlog.Filter{IP: "192.0.2.10"}), newestFirst(b))
	wantRecords(t, "IP filter 192.0.2", query(t, s, auditlog.Filter{IP: "192.0.2"}), nil)
	wantRecords(t, "IP + username filter", query(t, s, auditlog.Filter{IP: "192.0.2.10", Username: "x", Limit: 2}), newestFirst(b)[:2])
}

func sinkFilterUsername(t tb, s auditlog.Sink) {
	base := sinkBase()
	byName := map[string][]auditlog.Record{}
	var all []auditlog.Record
	for i, u := range TrickyUsernames {
		for j := 0; j < 2; j++ {
			r := rec(base.Add(time.Duration(i*2+j)*time.Second), "198.51.100.7", u)
			byName[u] = append(byName[u], r)
			all = append(all, r)
		}
	}
	write(t, s, all...)
	for _, u := range TrickyUsernames {
		wantRecords(t, fmt.Sprintf("username filter %q (exact match on the stored string)", u),
			query(t, s, auditlog.Filter{Username: u}), newestFirst(byName[u]))
	}
	wantRecords(t, "every record, each once", query(t, s, auditlog.Filter{}), newestFirst(all))
	wantRecords(t, "a username nobody used", query(t, s, auditlog.Filter{Username: "adm"}), nil)
}

// sinkFilterCanonical: Filter.Username selects the records whose
// CanonicalUsername equals it, whatever their typed spelling, and the
// records without a CanonicalUsername (written before the field existed)
// whose typed Username equals it; never a record whose typed name matches
// but whose canonical name differs.
func sinkFilterCanonical(t tb, s auditlog.Sink) {
	base := sinkBase()
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	withCanon := func(i int, ip, typed, canon string) auditlog.Record {
		r := rec(at(i), ip, typed)
		r.CanonicalUsername = canon
		return r
	}
	alice := []auditlog.Record{
		withCanon(0, "192.0.2.1", "alice", "alice"),
		withCanon(1, "192.0.2.1", "ALICE", "alice"),
		withCanon(2, "192.0.2.2", "ａｌｉｃｅ", "alice"),
		withCanon(3, "192.0.2.2", " Alice", "alice"),
		rec(at(4), "192.0.2.3", "alice"), // an old record, typed as the canonical name
		coalesced(at(5), "192.0.2.4", "AliCe", "alice", 12, 900*time.Millisecond),
	}
	oldTyped := rec(at(6), "192.0.2.3", "ALICE") // an old record, typed otherwise
	others := []auditlog.Record{
		oldTyped,
		withCanon(7, "192.0.2.1", "alice2", "alice2"),
		withCanon(8, "192.0.2.1", "alice", "bob"), // a resolver mapped alice to bob
		withCanon(9, "192.0.2.1", "Alic", "alic"),
	}
	tricky := make([]auditlog.Record, 0, len(TrickyUsernames))
	for i, u := range TrickyUsernames {
		tricky = append(tricky, withCanon(20+i, "198.51.100.7", "typed "+u, u))
	}
	write(t, s, append(append(append([]auditlog.Record{}, alice...), others...), tricky...)...)
	wantRecords(t, "canonical name alice: every spelling counted as alice, and old records typed alice",
		query(t, s, auditlog.Filter{Username: "alice"}), newestFirst(alice))
	wantRecords(t, "typed name ALICE: only the old record typed so (a record whose canonical name is alice is not ALICE)",
		query(t, s, auditlog.Filter{Username: "ALICE"}), []auditlog.Record{oldTyped})
	wantRecords(t, "canonical name bob: the record whose typed name alice was resolved to bob",
		query(t, s, auditlog.Filter{Username: "bob"}), []auditlog.Record{others[2]})
	wantRecords(t, "canonical name alice from 192.0.2.2",
		query(t, s, auditlog.Filter{Username: "alice", IP: "192.0.2.2"}), newestFirst(alice[2:4]))
	wantRecords(t, "canonical name alice, limit 2", query(t, s, auditlog.Filter{Username: "alice", Limit: 2}), newestFirst(alice)[:2])
	for i, u := range TrickyUsernames {
		wantRecords(t, fmt.Sprintf("canonical name %q (exact match on the stored string)", u),
			query(t, s, auditlog.Filter{Username: u}), []auditlog.Record{tricky[i]})
	}
}

func sinkFilterSince(t tb, s auditlog.Sink) {
	base := sinkBase()
	var all []auditlog.Record
	for i := 0; i < 6; i++ {
		all = append(all, rec(base.Add(time.Duration(i)*time.Minute), "192.0.2.1", "x"))
	}
	write(t, s, all...)
	wantRecords(t, "Since is inclusive", query(t, s, auditlog.Filter{Since: base.Add(3 * time.Minute)}), newestFirst(all[3:]))
	wantRecords(t, "Since in the future", query(t, s, auditlog.Filter{Since: base.Add(time.Hour)}), nil)
}

func sinkLimit(t tb, s auditlog.Sink) {
	base := sinkBase()
	var all []auditlog.Record
	for i := 0; i < 10; i++ {
		all = append(all, rec(base.Add(time.Duration(i)*time.Second), "192.0.2.1", "x"))
	}
	write(t, s, all...)
	for _, n := range []int{1, 3, 10, 11, 0, -1} {
		want := newestFirst(all)
		if n > 0 && n < len(want) {
			want = want[:n]
		}
		wantRecords(t, fmt.Sprintf("Limit %d keeps the newest", n), query(t, s, auditlog.Filter{Limit: n}), want)
	}
}

// sinkCoalesced: coalesced records (Count > 1) come back with their Count
// and Until, match filters like any record, and count as one record for
// Limit and Since (which go by Time, the first attempt).
func sinkCoalesced(t tb, s auditlog.Sink) {
	base := sinkBase()
	a := coalesced(base, "203.0.113.7", "root", "root", 1000, 999*time.Millisecond)
	b := coalesced(base.Add(time.Second), "203.0.113.7", "ROOT", "root", 2, time.Millisecond)
	c := rec(base.Add(1500*time.Millisecond), "203.0.113.7", "root")
	c.CanonicalUsername, c.Locked, c.Count = "root", true, 1 // 1: one attempt, as 0 is
	d := coalesced(base.Add(2*time.Second), "203.0.113.8", "", "", 5, 500*time.Millisecond)
	write(t, s, a, b, c, d)
	got := query(t, s, auditlog.Filter{})
	wantRecords(t, "coalesced records, newest first", got, []auditlog.Record{d, c, b, a})
	var n int64
	for _, r := range got {
		n += r.Attempts()
	}
	if n != 1000+2+1+5 {
		t.Errorf("the records stand for %d attempts, want %d (Count must be stored)", n, 1000+2+1+5)
	}
	wantRecords(t, "coalesced records by canonical name", query(t, s, auditlog.Filter{Username: "root"}), []auditlog.Record{c, b, a})
	wantRecords(t, "Limit counts records, not attempts", query(t, s, auditlog.Filter{Username: "root", Limit: 2}), []auditlog.Record{c, b})
	wantRecords(t, "Since goes by Time (the first attempt), not Until",
		query(t, s, auditlog.Filter{Since: base.Add(500 * time.Millisecond)}), []auditlog.Record{d, c, b})
	wantRecords(t, "a coalesced record without a username, by IP", query(t, s, auditlog.Filter{IP: "203.0.113.8"}), []auditlog.Record{d})
}

func sinkDeleteBefore(t tb, s auditlog.Sink) {
	base := sinkBase()
	var all []auditlog.Record
	for i := 0; i < 4; i++ {
		all = append(all, rec(base.Add(time.Duration(i)*time.Hour-3*time.Hour), "192.0.2.1", fmt.Sprintf("u%d", i)))
	}
	write(t, s, all...)
	cutoff := all[2].Time // records strictly before it go; the one at it stays
	n, err := s.DeleteBefore(sinkCtx(t), cutoff)
	if err != nil {
		t.Fatalf("DeleteBefore: %v", err)
	}
	if n != 2 {
		t.Errorf("DeleteBefore removed %d records, want 2", n)
	}
	wantRecords(t, "after DeleteBefore (a record at the cutoff is kept)", query(t, s, auditlog.Filter{}), newestFirst(all[2:]))
	if n, err := s.DeleteBefore(sinkCtx(t), cutoff); err != nil || n != 0 {
		t.Errorf("DeleteBefore again = %d, %v; want 0, nil", n, err)
	}
	// The sink still takes writes afterwards.
	r := rec(base, "192.0.2.9", "after")
	write(t, s, r)
	wantRecords(t, "a write after DeleteBefore", query(t, s, auditlog.Filter{IP: "192.0.2.9"}), []auditlog.Record{r})
}

// sinkDeleteCoalesced: DeleteBefore treats a coalesced record by its Time
// (the first attempt): one that started before the cutoff goes, even if it
// ends after it, and it counts as one record removed.
func sinkDeleteCoalesced(t tb, s auditlog.Sink) {
	base := sinkBase()
	cutoff := base.Add(-time.Hour)
	spans := coalesced(cutoff.Add(-time.Second), "203.0.113.7", "root", "root", 500, 2*time.Second)
	before := coalesced(cutoff.Add(-time.Hour), "203.0.113.7", "root", "root", 9, time.Second)
	at := coalesced(cutoff, "203.0.113.7", "root", "root", 7, time.Second)
	after := coalesced(cutoff.Add(time.Minute), "203.0.113.7", "root", "root", 3, time.Second)
	write(t, s, spans, before, at, after)
	n, err := s.DeleteBefore(sinkCtx(t), cutoff)
	if err != nil {
		t.Fatalf("DeleteBefore: %v", err)
	}
	if n != 2 {
		t.Errorf("DeleteBefore removed %d records, want 2 (records, not attempts; by Time, not Until)", n)
	}
	wantRecords(t, "after DeleteBefore, coalesced records by their Time", query(t, s, auditlog.Filter{}), []auditlog.Record{after, at})
}

func sinkIdempotent(t tb, s auditlog.Sink) {
	base := sinkBase()
	a := rec(base, "192.0.2.1", "a")
	b := rec(base.Add(time.Second), "192.0.2.1", "b")
	c := rec(base.Add(2*time.Second), "192.0.2.1", "c")
	write(t, s, a, b)
	write(t, s, a, b)    // a replayed batch
	write(t, s, c, a, c) // duplicates within a batch, and of an earlier one
	b2 := b
	b2.Username = "changed" // same ID: a replay, not a new record
	write(t, s, b2)
	got := query(t, s, auditlog.Filter{})
	if len(got) != 3 {
		t.Errorf("after replays Query returned %d records, want 3 (one per ID):%s", len(got), ids(got))
		return
	}
	wantRecords(t, "one record per ID, the first one written", got, []auditlog.Record{c, b, a})
}

func sinkConcurrent(t tb, s auditlog.Sink) {
	const writers, each, batch = 20, 50, 5
	base := sinkBase()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		want = map[string]bool{}
	)
	for g := 0; g < writers; g++ {
		var mine []auditlog.Record
		for i := 0; i < each; i++ {
			r := rec(base.Add(time.Duration(g*each+i)*time.Millisecond), fmt.Sprintf("10.0.%d.%d", g, i), fmt.Sprintf("w%d", g))
			mine = append(mine, r)
			want[r.ID] = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < len(mine); i += batch {
				if err := s.Write(sinkCtx(t), mine[i:i+batch]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Write: %v", err)
	}
	got := query(t, s, auditlog.Filter{})
	seen := map[string]int{}
	for _, r := range got {
		seen[r.ID]++
	}
	missing, dup := 0, 0
	for id := range want {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 || len(got) != len(want) {
		t.Errorf("%d writers x %d records: got %d records, %d missing, %d duplicated; want each of %d once",
			writers, each, len(got), missing, dup, len(want))
	}
	for i := 1; i < len(got); i++ {
		if !got[i-1].Time.After(got[i].Time) && !(got[i-1].Time.Equal(got[i].Time) && got[i-1].ID > got[i].ID) {
			t.Errorf("records %d and %d are not newest first", i-1, i)
			break
		}
	}
}

func sinkClosed(t tb, s auditlog.Sink) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := sinkCtx(t)
	if err := s.Write(ctx, []auditlog.Record{rec(sinkBase(), "192.0.2.1", "x")}); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("Write after Close = %v, want auditlog.ErrClosed", err)
	}
	if _, err := s.Query(ctx, auditlog.Filter{}); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("Query after Close = %v, want auditlog.ErrClosed", err)
	}
	if _, err := s.DeleteBefore(ctx, time.Now()); !errors.Is(err, auditlog.ErrClosed) {
		t.Errorf("DeleteBefore after Close = %v, want auditlog.ErrClosed", err)
	}
}
