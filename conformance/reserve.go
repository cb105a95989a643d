package conformance

import (
	"strconv"
	"time"

	"github.com/go-defender/defender/backend"
)

func reserve(t tb, b backend.Backend, r *backend.Reservation) {
	t.Helper()
	if err := backend.Reserve(ctx(t), b, r); err != nil {
		t.Fatalf("Reserve(blocks %q, counters %q): %v", r.Blocks, r.Counters, err)
	}
}

func block(t tb, b backend.Backend, req backend.BlockRequest) backend.BlockResult {
	t.Helper()
	res, err := backend.Block(ctx(t), b, req)
	if err != nil {
		t.Fatalf("Block(%q): %v", req.BlockKey, err)
	}
	return res
}

func (s *suite) reserveChecks() []check {
	return []check{
		{"NoBlock", func(t tb) {
			// With no block, every counter is incremented with the TTL.
			b := s.open(t)
			r := backend.Reservation{
				Blocks:   []string{"r:block:ip", "r:block:user"},
				Counters: []string{"r:count:ip", "r:count:user"},
				TTL:      time.Minute,
			}
			for i := int64(1); i <= 3; i++ {
				reserve(t, b, &r)
				if r.Blocked != -1 || len(r.Counts) != 2 || r.Counts[0] != i || r.Counts[1] != i {
					t.Fatalf("Reserve %d without blocks = Blocked %d Counts %v, want -1 [%d %d]", i, r.Blocked, r.Counts, i, i)
				}
			}
			for _, e := range get(t, b, r.Counters...) {
				checkTTL(t, "reserved counter", e, time.Minute, 0)
			}
			if es := get(t, b, r.Blocks...); es[0].Found || es[1].Found {
				t.Errorf("Reserve created a block key")
			}
		}},
		{"Blocked", func(t tb) {
			// With a block, Reserve reports it and counts nothing.
			b := s.open(t)
			r := backend.Reservation{
				Blocks:   []string{"r:block:ip", "r:block:user", "r:block:pair"},
				Counters: []string{"r:count:ip", "r:count:user", "r:count:fresh"},
				TTL:      time.Minute,
			}
			incr(t, b, r.Counters[:2], 2, time.Minute)
			setBlock(t, b, "r:block:user", []byte("user is blocked"), time.Minute)
			for i := 0; i < 3; i++ {
				reserve(t, b, &r)
				if r.Blocked != 1 {
					t.Fatalf("Reserve with Blocks[1] set: Blocked = %d, want 1", r.Blocked)
				}
				if !r.Block.Found || r.Block.Key != "r:block:user" || string(r.Block.Value) != "user is blocked" {
					t.Errorf("Reserve: Block = %+v, want the entry of r:block:user", r.Block)
				}
				checkTTL(t, "Reserve's Block entry", r.Block, time.Minute, 0)
			}
			// An absent counter may be left absent or at 0 (the fallback
			// increments, then refunds).
			es := get(t, b, r.Counters...)
			if string(es[0].Value) != "2" || string(es[1].Value) != "2" || (es[2].Found && string(es[2].Value) != "0") {
				t.Errorf("after Reserve on a block: counters = %s %s %s, want \"2\" \"2\" and absent or \"0\" (nothing counted)", entryValue(es[0]), entryValue(es[1]), entryValue(es[2]))
			}
			setBlock(t, b, "r:block:ip", []byte("ip"), 0)
			reserve(t, b, &r)
			if r.Blocked != 0 && r.Blocked != 1 {
				t.Errorf("Reserve with Blocks[0] and [1] set: Blocked = %d, want 0 or 1", r.Blocked)
			}
			if r.Blocked >= 0 && r.Block.Key != r.Blocks[r.Blocked] {
				t.Errorf("Reserve: Block.Key = %q, want Blocks[%d] = %q", r.Block.Key, r.Blocked, r.Blocks[r.Blocked])
			}
			if es := get(t, b, r.Counters...); string(es[0].Value) != "2" || string(es[1].Value) != "2" || (es[2].Found && string(es[2].Value) != "0") {
				t.Errorf("after Reserve on two blocks: counters = %s %s %s, want \"2\" \"2\" and absent or \"0\" (nothing counted)", entryValue(es[0]), entryValue(es[1]), entryValue(es[2]))
			}
		}},
		{"CountersOnly", func(t tb) {
			b := s.open(t)
			r := backend.Reservation{Counters: []string{"r:c"}, TTL: 0}
			reserve(t, b, &r)
			reserve(t, b, &r)
			if r.Blocked != -1 || len(r.Counts) != 1 || r.Counts[0] != 2 {
				t.Errorf("Reserve without blocks = Blocked %d Counts %v, want -1 [2]", r.Blocked, r.Counts)
			}
			checkTTL(t, "counter reserved with TTL 0", get1(t, b, "r:c"), 0, 0)
		}},
		{"BlocksOnly", func(t tb) {
			b := s.open(t)
			r := backend.Reservation{Blocks: []string{"r:b"}}
			reserve(t, b, &r)
			if r.Blocked != -1 || len(r.Counts) != 0 {
				t.Errorf("Reserve(no counters) = Blocked %d Counts %v, want -1 []", r.Blocked, r.Counts)
			}
			setBlock(t, b, "r:b", []byte("x"), time.Minute)
			reserve(t, b, &r)
			if r.Blocked != 0 {
				t.Errorf("Reserve with its block set: Blocked = %d, want 0", r.Blocked)
			}
		}},
	}
}

func (s *suite) blockChecks() []check {
	return []check{
		{"Escalation", func(t tb) {
			// The n-th lockout lasts Durations[n-1], the last one past the
			// end; the counter is dropped; the lockouts key lives Window.
			b := s.open(t)
			req := backend.BlockRequest{
				BlockKey:    "bl:block",
				Value:       []byte("blocked"),
				CounterKey:  "bl:count",
				LockoutsKey: "bl:lockouts",
				Window:      24 * hour,
				Durations:   []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute},
			}
			for n, want := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 3 * time.Minute, 3 * time.Minute} {
				incr1(t, b, "bl:count", 4, time.Minute)
				res := block(t, b, req)
				if res.Lockouts != int64(n+1) || res.Duration != want {
					t.Errorf("lockout %d: Block = %+v, want Lockouts %d Duration %v", n+1, res, n+1, want)
				}
				es := get(t, b, "bl:block", "bl:count", "bl:lockouts")
				if string(es[0].Value) != "blocked" {
					t.Errorf("lockout %d: block value = %s, want \"blocked\"", n+1, entryValue(es[0]))
				}
				checkTTL(t, "block "+strconv.Itoa(n+1), es[0], want, 0)
				if es[1].Found {
					t.Errorf("lockout %d: the counter %q is still there (%s), want it deleted", n+1, "bl:count", entryValue(es[1]))
				}
				if string(es[2].Value) != strconv.Itoa(n+1) {
					t.Errorf("lockout %d: lockouts key = %s, want %q", n+1, entryValue(es[2]), strconv.Itoa(n+1))
				}
				checkTTL(t, "lockouts key", es[2], 24*hour, 0)
			}
		}},
		{"Permanent", func(t tb) {
			// A duration of 0 is permanent; Window 0 keeps the count forever.
			b := s.open(t)
			req := backend.BlockRequest{
				BlockKey:    "bl:block",
				Value:       []byte("v"),
				LockoutsKey: "bl:lockouts",
				Durations:   []time.Duration{time.Minute, 0},
			}
			res := block(t, b, req)
			if res.Duration != time.Minute {
				t.Errorf("lockout 1: Duration = %v, want 1m", res.Duration)
			}
			checkTTL(t, "lockouts key with Window 0", get1(t, b, "bl:lockouts"), 0, 0)
			for n := 2; n <= 3; n++ {
				res = block(t, b, req)
				if res.Lockouts != int64(n) || res.Duration != 0 {
					t.Errorf("lockout %d: Block = %+v, want Lockouts %d Duration 0 (permanent)", n, res, n)
				}
				checkTTL(t, "permanent block", get1(t, b, "bl:block"), 0, 0)
			}
		}},
		{"RestartsTTL", func(t tb) {
			// Block sets the block anew even when one exists.
			b := s.open(t)
			setBlock(t, b, "bl:block", []byte("old"), shortTTL)
			res := block(t, b, backend.BlockRequest{
				BlockKey: "bl:block", Value: []byte("new"), LockoutsKey: "bl:lockouts",
				Window: hour, Durations: []time.Duration{hour},
			})
			e := get1(t, b, "bl:block")
			if res.Duration != hour || string(e.Value) != "new" {
				t.Errorf("Block over an existing block: %+v, value %s; want Duration 1h, value \"new\"", res, entryValue(e))
			}
			checkTTL(t, "re-set block", e, hour, 0)
		}},
		{"IfAbsent", func(t tb) {
			// A conditional block over an existing block changes nothing
			// and reports the block; without one it blocks as usual.
			b := s.open(t)
			req := backend.BlockRequest{
				BlockKey: "bl:block", Value: []byte("new"), CounterKey: "bl:count", LockoutsKey: "bl:lockouts",
				Window: hour, Durations: []time.Duration{time.Minute, hour}, IfAbsent: true,
			}
			res := block(t, b, req)
			if res.Existing || res.Lockouts != 1 || res.Duration != time.Minute {
				t.Errorf("IfAbsent Block with no block: %+v, want Lockouts 1 Duration 1m, not Existing", res)
			}
			setBlock(t, b, "bl:block", []byte("old"), 2*hour)
			incr1(t, b, "bl:count", 5, time.Minute)
			res = block(t, b, req)
			es := get(t, b, "bl:block", "bl:count", "bl:lockouts")
			if !res.Existing || res.Duration <= hour || res.Duration > 2*hour+time.Second {
				t.Errorf("IfAbsent Block over a 2h block: %+v, want Existing with its remaining TTL", res)
			}
			if string(es[0].Value) != "old" || !es[1].Found || string(es[2].Value) != "1" {
				t.Errorf("IfAbsent Block over a block changed something: block %s, counter %s, lockouts %s; want \"old\", 5, 1",
					entryValue(es[0]), entryValue(es[1]), entryValue(es[2]))
			}
			checkTTL(t, "block under an IfAbsent Block", es[0], 2*hour, 0)
			setBlock(t, b, "bl:perm", []byte("p"), 0)
			res = block(t, b, backend.BlockRequest{BlockKey: "bl:perm", LockoutsKey: "bl:lp", Durations: []time.Duration{hour}, IfAbsent: true})
			if !res.Existing || res.Duration != 0 {
				t.Errorf("IfAbsent Block over a permanent block: %+v, want Existing, Duration 0", res)
			}
		}},
		{"IfAbsentRacing", func(t tb) {
			// Conditional blocks racing on one identity escalate it
			// once, when the backend is a Blocker (the fallback reads,
			// then blocks, and is not atomic). The keys share a hash tag,
			// as the engine's keys of one identity do.
			b := s.open(t)
			if _, ok := b.(backend.Blocker); !ok {
				return
			}
			const n = 16
			res := make(chan backend.BlockResult, n)
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				go func() {
					r, err := backend.Block(ctx(t), b, backend.BlockRequest{BlockKey: "bl:{race}:b", Value: []byte("v"),
						LockoutsKey: "bl:{race}:n", Window: hour, Durations: []time.Duration{hour}, IfAbsent: true})
					res <- r
					errs <- err
				}()
			}
			set := 0
			for i := 0; i < n; i++ {
				if err := <-errs; err != nil {
					t.Fatalf("IfAbsent Block: %v", err)
				}
				if r := <-res; !r.Existing {
					set++
				}
			}
			if l := get1(t, b, "bl:{race}:n"); set != 1 || string(l.Value) != "1" {
				t.Errorf("%d racing IfAbsent Blocks: %d set the block, lockouts %s; want exactly 1 and 1", n, set, entryValue(l))
			}
		}},
		{"EmptyDurations", func(t tb) {
			b := s.open(t)
			_, err := backend.Block(ctx(t), b, backend.BlockRequest{BlockKey: "bl:b", LockoutsKey: "bl:l"})
			if !isErr(err, backend.ErrInvalid) {
				t.Errorf("Block with no Durations: err = %v, want %v", err, backend.ErrInvalid)
			}
		}},
	}
}
