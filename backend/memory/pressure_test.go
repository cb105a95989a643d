package memory

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/go-defender/defender/backend"
)

// TestShardLayout: shards are whole multiples of 128 bytes, so that two
// shards' locks never share a cache line pair.
func TestShardLayout(t *testing.T) {
	if n := unsafe.Sizeof(shard{}); n%128 != 0 {
		t.Fatalf("shard is %d bytes", n)
	}
}

// TestEvictionOrder: the victim is the counter with the fewest failures,
// the least recently written among equals; an expired counter goes before
// any live one.
func TestEvictionOrder(t *testing.T) {
	s, c := openClock(t, 32) // one shard of 32 keys, no pinned key
	incr1(t, s, "zero", 0, time.Hour)
	incr1(t, s, "neg", -5, time.Hour)
	incr1(t, s, "two", 2, time.Hour)
	incr1(t, s, "many", 1000, time.Hour)
	incr1(t, s, "short", 7, time.Minute)
	for i := range 27 {
		incr1(t, s, "one"+strconv.Itoa(i), 1, time.Hour)
	}
	incr1(t, s, "one0", 0, time.Hour) // written again: now the most recent of class 1
	evicted := func(want ...string) {
		t.Helper()
		for _, k := range want {
			if get1(t, s, k).Found {
				t.Fatalf("%s not evicted", k)
			}
		}
	}
	kept := func(want ...string) {
		t.Helper()
		for _, k := range want {
			if !get1(t, s, k).Found {
				t.Fatalf("%s evicted", k)
			}
		}
	}
	incr1(t, s, "new0", 1, time.Hour) // the first eviction sweeps: nothing expired
	incr1(t, s, "new1", 1, time.Hour)
	evicted("zero", "neg") // class 0, least recent first
	kept("one1", "two")
	incr1(t, s, "new2", 1, time.Hour)
	evicted("one1") // one0 was written again after one1
	kept("one0")
	// An expired counter goes before a live one, even of a higher class,
	// when no sweep is due (the last one was less than a second ago).
	c.Advance(59500 * time.Millisecond)
	incr1(t, s, "new3", 1, time.Hour) // sweeps: nothing expired yet
	evicted("one2")
	c.Advance(500 * time.Millisecond)
	incr1(t, s, "new4", 1, time.Hour)
	evicted("short")
	kept("one3")
	if st := s.Stats(); st.Evictions != 4 || st.Expired != 1 {
		t.Fatalf("%+v", st)
	}
	// A flood of new counters at count 1 never evicts a higher count.
	for i := range 10_000 {
		incr1(t, s, "junk"+strconv.Itoa(i), 1, time.Hour)
	}
	kept("two", "many")
	// Once nothing lower is left, class 2 goes, then the largest counts.
	for i := range 40 {
		incr1(t, s, "pair"+strconv.Itoa(i), 2, time.Hour)
	}
	evicted("two")
	kept("many")
	for i := range 31 {
		incr1(t, s, "big"+strconv.Itoa(i), 70, time.Hour) // class 63, like "many", but more recent
	}
	incr1(t, s, "last", 1, time.Hour)
	evicted("many")
}

// TestClassLists checks the lists against the slots after a random mix of
// writes: every live counter is on its class's list exactly once, in order
// of last write, and the non-empty mask matches.
func TestClassLists(t *testing.T) {
	s, c := openClock(t, 32)
	ops := 0
	for i := range 3000 {
		k := "k" + strconv.Itoa(i*7919%97)
		switch i % 7 {
		case 0:
			_ = s.Delete(bg, k)
		case 1:
			_ = s.SetBlock(bg, k, nil, time.Minute)
		case 2:
			_, _ = s.Block(bg, backend.BlockRequest{BlockKey: "b" + k, LockoutsKey: k, Window: time.Minute, Durations: []time.Duration{time.Minute}})
		case 3:
			c.Advance(time.Second)
		case 4:
			_ = s.Reserve(bg, &backend.Reservation{Blocks: []string{"b" + k}, Counters: []string{k}, TTL: 30 * time.Second})
		default:
			_, _ = s.Incr(bg, []string{k}, int64(i%5)-1, time.Duration(i%3)*time.Minute)
		}
		ops++
		checkLists(t, &s.shards[0])
	}
	if st := s.Stats(); st.Keys > 32 || st.Pinned > st.MaxPinned {
		t.Fatalf("%+v", st)
	}
}

func checkLists(t *testing.T, sh *shard) {
	t.Helper()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	seen := map[int32]bool{}
	for c := range classes {
		if sh.nonEmpty&(1<<c) == 0 {
			continue
		}
		prev := int32(-1)
		for i := sh.head[c]; i >= 0; i = sh.ents[i].lnext {
			e := &sh.ents[i]
			if e.kind != kindCounter || class(e.n) != c || e.prev != prev || seen[i] {
				t.Fatalf("class %d: bad slot %d %+v", c, i, *e)
			}
			seen[i] = true
			prev = i
		}
		if sh.tail[c] != prev {
			t.Fatalf("class %d: tail %d, last %d", c, sh.tail[c], prev)
		}
	}
	counters, pinned := 0, 0
	for i := range sh.ents {
		switch sh.ents[i].kind {
		case kindCounter:
			counters++
			if !seen[int32(i)] {
				t.Fatalf("counter %q on no list", sh.ents[i].key)
			}
		case kindPinned, kindBlock:
			pinned++
		}
	}
	if counters != len(seen) || pinned != sh.pinned || counters+pinned != sh.n || sh.n > sh.max || sh.pinned > sh.maxPinned {
		t.Fatalf("counters %d (listed %d), pinned %d/%d, n %d/%d", counters, len(seen), pinned, sh.pinned, sh.n, sh.max)
	}
}

// TestFullOfBlocks: blocks and lockout counts may use 3/4 of each shard;
// past that new ones are refused with ErrFull (never evicted), and new
// counters are still counted: a store full of blocks never refuses a
// login that is not blocked.
func TestFullOfBlocks(t *testing.T) {
	var logbuf bytes.Buffer
	c := newClock()
	s := open(t, &Options{MaxKeys: 1000, Now: c.Now, SweepInterval: -1, Logger: slog.New(slog.NewTextHandler(&logbuf, nil))})
	blocked := 0
	refused := 0
	for i := 0; refused < 200; i++ {
		u := strconv.Itoa(i)
		_, err := s.Block(bg, backend.BlockRequest{BlockKey: "b:" + u, LockoutsKey: "l:" + u, Window: time.Hour, Durations: []time.Duration{time.Hour}})
		switch {
		case err == nil:
			blocked++
		case errors.Is(err, backend.ErrFull):
			refused++
		default:
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Pinned != 2*blocked || st.Pinned > st.MaxPinned || st.MaxPinned != 744 || st.Full != 200 {
		t.Fatalf("%d blocks: %+v", blocked, st)
	}
	// Every new login is counted, none refused, and no block is lost.
	for i := range 5000 {
		id := strconv.Itoa(i)
		r := &backend.Reservation{Blocks: []string{"b:ip" + id, "b:u" + id}, Counters: []string{"f:ip" + id, "f:u" + id}, TTL: time.Hour}
		if err := s.Reserve(bg, r); err != nil || r.Blocked != -1 || r.Counts[0] != 1 {
			t.Fatalf("login %d: %v %+v", i, err, r)
		}
	}
	for i := range blocked + refused {
		u := strconv.Itoa(i)
		es, err := s.Get(bg, []string{"b:" + u, "l:" + u})
		if err != nil {
			t.Fatal(err)
		}
		if es[0].Found != es[1].Found {
			t.Fatalf("block %s: a lockout count without its block, or the reverse: %+v", u, es)
		}
	}
	if n := strings.Count(logbuf.String(), "share of the key bound is full"); n != 1 {
		t.Fatalf("%d refusal warnings, want 1:\n%s", n, logbuf.String())
	}
	if n := strings.Count(logbuf.String(), "evicting"); n != 1 {
		t.Fatalf("%d eviction warnings, want 1:\n%s", n, logbuf.String())
	}
}

// TestPinnedRoom covers how the pinned share gets room again: a block that
// expires, a deleted block, and the fast refusal in between.
func TestPinnedRoom(t *testing.T) {
	s, c := openClock(t, 32) // one shard: 24 pinned keys
	for i := range 24 {
		if err := s.SetBlock(bg, "b"+strconv.Itoa(i), nil, time.Duration(i+1)*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	incr1(t, s, "counter", 3, time.Hour)
	full := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, backend.ErrFull) {
			t.Fatalf("%s: %v, want ErrFull", what, err)
		}
	}
	full("new block", s.SetBlock(bg, "nb", nil, 0))
	full("counter to block", s.SetBlock(bg, "counter", nil, 0))
	_, err := s.Block(bg, backend.BlockRequest{BlockKey: "b0", LockoutsKey: "counter", Durations: []time.Duration{time.Minute}})
	full("counter to lockout count", err)
	if e := get1(t, s, "counter"); string(e.Value) != "3" {
		t.Fatalf("counter = %s", e.Value)
	}
	// Existing blocks are rewritten; counters keep counting.
	if err := s.SetBlock(bg, "b5", []byte("again"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		incr1(t, s, "c"+strconv.Itoa(i), 1, time.Hour)
	}
	// The first block expires: room for one (the refusal knew when).
	c.Advance(time.Minute)
	if err := s.SetBlock(bg, "nb", nil, 0); err != nil {
		t.Fatal(err)
	}
	full("past the share again", s.SetBlock(bg, "nb2", nil, 0))
	// A deleted block makes room at once.
	if err := s.Delete(bg, "nb"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBlock(bg, "nb2", nil, 0); err != nil {
		t.Fatal(err)
	}
	// A counter becomes a lockout count, and a block, when there is room.
	if err := s.Delete(bg, "b1", "b2"); err != nil {
		t.Fatal(err)
	}
	incr1(t, s, "c99", 1, time.Hour)
	res, err := s.Block(bg, backend.BlockRequest{BlockKey: "c98", LockoutsKey: "c99", Durations: []time.Duration{0}})
	if err != nil || res.Lockouts != 3 {
		t.Fatalf("%+v %v", res, err)
	}
	if st := s.Stats(); st.Pinned != 24 || st.Full != 4 {
		t.Fatalf("%+v", st)
	}
	// Only permanent blocks and lockout counts: refused until a delete.
	for i := 3; i < 24; i++ {
		if err := s.SetBlock(bg, "b"+strconv.Itoa(i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	full("all permanent", s.SetBlock(bg, "p", nil, 0))
	c.Advance(time.Hour)
	full("all permanent, later", s.SetBlock(bg, "p", nil, 0))
}

// TestPinnedSweepGap: within a second of the last sweep, a full pinned
// share is not swept again unless one of its keys is known to have expired.
func TestPinnedSweepGap(t *testing.T) {
	s, c := openClock(t, 32)
	for i := range 24 {
		if err := s.SetBlock(bg, "b"+strconv.Itoa(i), nil, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetBlock(bg, "x", nil, 0); !errors.Is(err, backend.ErrFull) {
		t.Fatal(err)
	}
	if err := s.Delete(bg, "b0"); err != nil { // clears the full mark
		t.Fatal(err)
	}
	if err := s.SetBlock(bg, "short", nil, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Millisecond)
	// Full again, and no sweep is due: refused although "short" expired.
	if err := s.SetBlock(bg, "y", nil, 0); !errors.Is(err, backend.ErrFull) {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if err := s.SetBlock(bg, "y", nil, 0); err != nil {
		t.Fatal(err)
	}
	// Block needs two pinned keys where one is free: refused, without
	// marking the share full.
	if err := s.Delete(bg, "b1"); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if _, err := s.Block(bg, backend.BlockRequest{BlockKey: "nb", LockoutsKey: "nl", Durations: []time.Duration{time.Minute}}); !errors.Is(err, backend.ErrFull) {
		t.Fatal(err)
	}
	if err := s.SetBlock(bg, "z", nil, 0); err != nil {
		t.Fatal(err)
	}
}

// TestEachStat lists the statistics with their values.
func TestEachStat(t *testing.T) {
	s, _ := openClock(t, 32)
	for i := range 40 {
		incr1(t, s, "c"+strconv.Itoa(i), 1, time.Hour)
	}
	if err := s.SetBlock(bg, "b", nil, 0); err != nil {
		t.Fatal(err)
	}
	var got []string
	s.EachStat(func(name, help string, counter bool, v float64) {
		if help == "" || strings.HasSuffix(name, "_total") != counter {
			t.Errorf("%s: help %q, counter %v", name, help, counter)
		}
		got = append(got, name+"="+strconv.FormatFloat(v, 'f', -1, 64))
	})
	want := "keys=32 max_keys=32 pinned_keys=1 max_pinned_keys=24 evictions_total=9 expired_total=0 refused_total=0"
	if strings.Join(got, " ") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
}

// TestDefaultLogger: a store without a Logger warns on slog.Default().
func TestDefaultLogger(t *testing.T) {
	var logbuf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logbuf, nil)))
	defer slog.SetDefault(prev)
	s, err := New(&Options{MaxKeys: 32, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 33 {
		if _, err := s.Incr(bg, []string{"c" + strconv.Itoa(i)}, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(logbuf.String(), "evicting") {
		t.Fatalf("no warning on the default logger: %q", logbuf.String())
	}
}

// TestWarnerRateLimit: one warning at the start of a burst, then at most
// one per warnGap while it lasts, and one again after a quiet burstGap.
func TestWarnerRateLimit(t *testing.T) {
	var w warner
	if !w.note() || w.note() {
		t.Fatal("want one warning at the start of a burst")
	}
	now := time.Now().UnixNano()
	w.warned.Store(now - int64(warnGap)) // a minute into the burst
	if !w.note() || w.note() {
		t.Fatal("want one warning per warnGap during a burst")
	}
	w.last.Store(now - int64(burstGap)) // quiet for burstGap
	if !w.note() {
		t.Fatal("want a warning at a new burst")
	}
}
