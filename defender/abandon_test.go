package defender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

// hangUp is a network-like store (no Immediate) that runs a hook inside
// Reserve and Get, where a client could hang up, and can fail Block.
type hangUp struct {
	backend.Backend
	during    func(ctx context.Context) error // run before the call; its error fails it
	failBlock atomic.Bool
	calls     atomic.Int64
}

func (h *hangUp) Reserve(ctx context.Context, r *backend.Reservation) error {
	h.calls.Add(1)
	if h.during != nil {
		if err := h.during(ctx); err != nil {
			return err
		}
	}
	return backend.Reserve(ctx, h.Backend, r)
}

func (h *hangUp) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	h.calls.Add(1)
	if h.during != nil {
		if err := h.during(ctx); err != nil {
			return nil, err
		}
	}
	return h.Backend.Get(ctx, keys)
}

func (h *hangUp) Block(ctx context.Context, req backend.BlockRequest) (backend.BlockResult, error) {
	if h.failBlock.Load() {
		return backend.BlockResult{}, fmt.Errorf("block: %w", backend.ErrUnavailable)
	}
	return backend.Block(ctx, h.Backend, req)
}

func newHangUp(t *testing.T, mode FailMode) (*Defender, *hangUp, *[]Event) {
	t.Helper()
	clk := newClock()
	st, err := memory.New(&memory.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := &hangUp{Backend: st}
	cfg := DefaultConfig()
	cfg.FailMode = mode
	evs := &[]Event{}
	d, err := New(h, cfg, &Options{Now: clk.Now, Logger: slog.New(slog.DiscardHandler),
		Hooks: []Hook{func(ev Event) { *evs = append(*evs, ev) }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); st.Close() })
	return d, h, evs
}

func counter(t *testing.T, d *Defender, id identity) int64 {
	t.Helper()
	es, err := d.store.Get(context.Background(), []string{id.key(d.prefix, slotCounter)})
	if err != nil {
		t.Fatal(err)
	}
	if !es[0].Found {
		return 0
	}
	var n int64
	fmt.Sscan(string(es[0].Value), &n)
	return n
}

// TestClientGoneIsNotAnOutage: a client that hangs up while its login is
// being checked is abandoned: the store call completes (its context is not
// the client's), the reservation is refunded, no password check, no store
// event, no fail mode — in every fail mode, and even when the store failed
// at the same moment (then the store's own failure is reported).
func TestClientGoneIsNotAnOutage(t *testing.T) {
	alice := identity{kind: KindUsername, username: "alice"}
	ip := identity{kind: KindIP, ip: "192.0.2.1"}
	for _, mode := range []FailMode{FailClosed, FailOpen, FailLocal} {
		t.Run(string(mode), func(t *testing.T) {
			d, h, evs := newHangUp(t, mode)
			cctx, cancel := context.WithCancel(context.Background())
			h.during = func(sctx context.Context) error {
				cancel() // the client hangs up while the store answers
				if sctx.Err() != nil {
					t.Errorf("the store call's context ended with the client's")
				}
				return nil
			}
			a := d.Attempt(cctx, login("192.0.2.1", "alice"))
			if dec := a.Decision(); dec.Verdict != Abandoned || !errors.Is(dec.Err, context.Canceled) {
				t.Fatalf("decision %+v, want abandoned", dec)
			}
			if got := a.Failed(context.Background()); got.Verdict != Abandoned {
				t.Fatalf("settling an abandoned attempt: %+v", got)
			}
			if counter(t, d, alice) != 0 || counter(t, d, ip) != 0 {
				t.Fatalf("abandoned attempt left counts: alice %d, ip %d", counter(t, d, alice), counter(t, d, ip))
			}
			// A page view (Check) of a gone client, too.
			cctx2, cancel2 := context.WithCancel(context.Background())
			h.during = func(context.Context) error { cancel2(); return nil }
			if dec := d.Check(cctx2, login("192.0.2.1", "alice")); dec.Verdict != Abandoned {
				t.Fatalf("check: %+v", dec)
			}
			// The store fails at the same moment: reported, yet the
			// attempt is abandoned, not decided by the fail mode.
			cctx3, cancel3 := context.WithCancel(context.Background())
			h.during = func(context.Context) error {
				cancel3()
				return fmt.Errorf("x: %w", backend.ErrUnavailable)
			}
			if dec := d.Attempt(cctx3, login("192.0.2.1", "alice")).Decision(); dec.Verdict != Abandoned || dec.FailMode != "" {
				t.Fatalf("store failure with the client gone: %+v", dec)
			}
			d.Close()
			if len(*evs) != 1 || (*evs)[0].Kind != EventStoreFailed {
				t.Fatalf("events %+v: want only the store's own failure", *evs)
			}
		})
	}
	t.Run("gone before the check", func(t *testing.T) {
		d, h, evs := newHangUp(t, FailOpen)
		cctx, cancel := context.WithCancel(context.Background())
		cancel()
		if dec := d.Attempt(cctx, login("192.0.2.1", "alice")).Decision(); dec.Verdict != Abandoned {
			t.Fatalf("%+v", dec)
		}
		if h.calls.Load() != 0 {
			t.Fatalf("%d store calls for a client already gone", h.calls.Load())
		}
		d.Close()
		if len(*evs) != 0 {
			t.Fatalf("events %+v", *evs)
		}
	})
}

// TestEveryRefusalIsAVisibleBlock: a counter past limit+1 without a block
// (its block was lost: the process that should have set it died, or the
// block call failed) refuses the login, and that refusal is a block the
// admin lists and an unblock removes.
func TestEveryRefusalIsAVisibleBlock(t *testing.T) {
	alice := identity{kind: KindUsername, username: "alice"}
	t.Run("lost block", func(t *testing.T) {
		d, _, evs := newHangUp(t, FailClosed)
		if _, err := d.store.Incr(ctx, []string{alice.key(d.prefix, slotCounter)}, 5, time.Hour); err != nil {
			t.Fatal(err)
		}
		dec := d.Attempt(ctx, Login{Username: "alice"}).Decision()
		if dec.Verdict != Locked || dec.Kind != KindUsername {
			t.Fatalf("%+v", dec)
		}
		blocks, _, err := d.Blocks(ctx, "", 10)
		if err != nil || len(blocks) != 1 || blocks[0].Username != "alice" {
			t.Fatalf("blocks %+v %v: the refusal is not visible", blocks, err)
		}
		if ok, err := d.UnblockUsername(ctx, "ALICE"); !ok || err != nil {
			t.Fatalf("unblock: %v %v", ok, err)
		}
		if dec := d.Attempt(ctx, Login{Username: "alice"}).Decision(); !dec.Allowed() {
			t.Fatalf("after unblock: %+v", dec)
		}
		d.Close()
		if n := strings.Count(fmt.Sprint(*evs), string(EventUsernameBlocked)); n != 1 {
			t.Fatalf("events %+v: want one block event", *evs)
		}
	})
	t.Run("failed block", func(t *testing.T) {
		d, h, _ := newHangUp(t, FailClosed)
		for i := 0; i < 3; i++ {
			d.Attempt(ctx, Login{Username: "alice"}).Failed(ctx)
		}
		h.failBlock.Store(true)
		if dec := d.Attempt(ctx, Login{Username: "alice"}).Failed(ctx); dec.Verdict != Locked || dec.Err == nil {
			t.Fatalf("failure limit+1 with the block failing: %+v", dec)
		}
		h.failBlock.Store(false)
		waitRecovered(t, d)
		if dec := d.Attempt(ctx, Login{Username: "alice"}).Decision(); dec.Verdict != Locked {
			t.Fatalf("%+v", dec)
		}
		if blocks, _, _ := d.Blocks(ctx, "", 10); len(blocks) != 1 {
			t.Fatalf("blocks %+v", blocks)
		}
	})
}

// TestRefusedUsernames: a name over MaxUsernameBytes after trimming is
// refused without a check and counted against the IP; padding is trimmed
// before measuring, so a padded name is its own name.
func TestRefusedUsernames(t *testing.T) {
	d, _, _ := newHangUp(t, FailClosed)
	ip := identity{kind: KindIP, ip: "192.0.2.1"}
	long := strings.Repeat("x", MaxUsernameBytes+1)
	a := d.Attempt(ctx, login("192.0.2.1", long))
	if dec := a.Decision(); dec.Verdict != Refused || !errors.Is(dec.Err, ErrUsernameTooLong) {
		t.Fatalf("%+v", dec)
	}
	if counter(t, d, ip) != 1 {
		t.Fatalf("IP counter %d, want 1", counter(t, d, ip))
	}
	if dec := d.Check(ctx, login("192.0.2.1", long)); dec.Verdict != Refused {
		t.Fatalf("check: %+v", dec)
	}
	for i := 0; i < 3; i++ {
		d.Attempt(ctx, login(fmt.Sprintf("192.0.2.%d", 10+i), strings.Repeat(" ", 1030)+"alice")).Failed(ctx)
	}
	if dec := d.Attempt(ctx, login("192.0.2.99", "alice")).Decision(); !dec.Allowed() {
		t.Fatalf("%+v", dec)
	}
	if got := counter(t, d, identity{kind: KindUsername, username: "alice"}); got != 4 {
		t.Fatalf("alice's counter %d, want 4: padded names are alice", got)
	}
	// Refusals count: the IP's fourth is locked.
	for i := 0; i < 3; i++ {
		d.Refuse(ctx, login("192.0.2.1", ""), ErrAmbiguousLogin)
	}
	if dec := d.Refuse(ctx, login("192.0.2.1", ""), ErrAmbiguousLogin); dec.Verdict != Locked {
		t.Fatalf("refusals past the limit: %+v", dec)
	}
}
