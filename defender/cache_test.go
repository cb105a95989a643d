package defender

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

// network is a memory store seen as a network store (no Immediate), that
// counts its calls, and optionally carries announcements in process.
type network struct {
	backend.Backend
	calls atomic.Int64
}

func (n *network) Reserve(ctx context.Context, r *backend.Reservation) error {
	n.calls.Add(1)
	return backend.Reserve(ctx, n.Backend, r)
}

func (n *network) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	n.calls.Add(1)
	return n.Backend.Get(ctx, keys)
}

// hub fans announcements out to every subscriber, as Redis pub/sub does.
type hub struct {
	mu   sync.Mutex
	subs map[int]func(string)
	next int
}

type notifying struct {
	*network
	hub *hub
}

func (n *notifying) Notify(_ context.Context, keys ...string) error {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	for _, f := range n.hub.subs {
		for _, k := range keys {
			f(k)
		}
	}
	return nil
}

func (n *notifying) Subscribe(onKey func(string), onReset func()) (func(), error) {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	if n.hub.subs == nil {
		n.hub.subs = map[int]func(string){}
	}
	id := n.hub.next
	n.hub.next++
	n.hub.subs[id] = onKey
	onReset()
	return func() {
		n.hub.mu.Lock()
		delete(n.hub.subs, id)
		n.hub.mu.Unlock()
	}, nil
}

// twoNodes returns two Defenders ("processes") on one shared store, each
// with its own store client counting calls.
func twoNodes(t *testing.T, announce bool, mut func(*Config)) (a, b *Defender, na, nb *network, clk *clock) {
	t.Helper()
	clk = newClock()
	st, err := memory.New(&memory.Options{Now: clk.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := DefaultConfig()
	cfg.AuditCoalesceWindow = 0
	if mut != nil {
		mut(&cfg)
	}
	h := &hub{}
	mk := func() (*Defender, *network) {
		n := &network{Backend: st}
		var s backend.Backend = n
		if announce {
			s = &notifying{network: n, hub: h}
		}
		d, err := New(s, cfg, &Options{Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d, n
	}
	a, na = mk()
	b, nb = mk()
	return
}

// cachedSoon has d learn l's block from the store, waits for its cache to
// hold it (ristretto applies a write asynchronously), and checks that the
// next locked attempt costs no store call.
func cachedSoon(t *testing.T, d *Defender, n *network, l Login) {
	t.Helper()
	d.Check(ctx, l)
	d.cache.c.Wait()
	before := n.calls.Load()
	if dec := d.Attempt(ctx, l).Decision(); dec.Verdict != Locked || n.calls.Load() != before {
		t.Fatalf("a known block cost a store call, or was not locked: %+v", dec)
	}
}

// TestNearCache: a block set through A is refused by B, then answered from
// B's cache without store calls; an unblock through A lets the user in
// through B at once when the store announces it, within BlockCacheTTL
// otherwise; escalation and permanent blocks are unchanged.
func TestNearCache(t *testing.T) {
	l := Login{Username: "alice"}
	t.Run("announced", func(t *testing.T) {
		a, b, na, nb, _ := twoNodes(t, true, nil)
		for i := 0; i < 4; i++ {
			a.Attempt(ctx, l).Failed(ctx)
		}
		cachedSoon(t, a, na, l) // A cached the block it set
		if dec := b.Attempt(ctx, l).Decision(); dec.Verdict != Locked {
			t.Fatalf("B: %+v", dec)
		}
		cachedSoon(t, b, nb, l)
		if dec := b.Check(ctx, l); dec.Verdict != Locked || dec.RetryAfter <= 0 {
			t.Fatalf("B check: %+v", dec)
		}
		if _, err := a.UnblockUsername(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if dec := b.Attempt(ctx, l).Decision(); !dec.Allowed() {
			t.Fatalf("B right after the unblock through A: %+v", dec)
		}
	})
	t.Run("not announced", func(t *testing.T) {
		a, b, _, nb, clk := twoNodes(t, false, nil)
		for i := 0; i < 4; i++ {
			a.Attempt(ctx, l).Failed(ctx)
		}
		b.Check(ctx, l)
		b.cache.c.Wait()
		if _, err := a.UnblockUsername(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		before := nb.calls.Load()
		if dec := b.Check(ctx, l); dec.Verdict != Locked || nb.calls.Load() != before {
			t.Fatalf("B within BlockCacheTTL of the unblock: %+v (stale by design)", dec)
		}
		_ = clk
		waitFor(t, "B's entry to outlive BlockCacheTTL", func() bool { return b.Check(ctx, l).Allowed() })
	})
	t.Run("escalation and permanent blocks", func(t *testing.T) {
		a, b, _, nb, clk := twoNodes(t, false, func(c *Config) {
			c.LockoutCooloffTimes = []time.Duration{time.Minute, 0}
			c.BlockCacheTTL = time.Hour // only the block's own end bounds it
		})
		for i := 0; i < 4; i++ {
			a.Attempt(ctx, l).Failed(ctx)
		}
		cachedSoon(t, b, nb, l)
		clk.Advance(time.Minute) // the block ends: B's entry with it
		if dec := b.Check(ctx, l); !dec.Allowed() {
			t.Fatalf("B after the first block ended: %+v", dec)
		}
		var dec Decision
		for i := 0; i < 4; i++ { // the second lockout, through B: permanent
			dec = b.Attempt(ctx, l).Failed(ctx)
		}
		if !dec.Permanent {
			t.Fatalf("second lockout: %+v, want permanent", dec)
		}
		if dec := a.Check(ctx, l); !dec.Permanent {
			t.Fatalf("A: %+v, want permanent", dec)
		}
		cachedSoon(t, b, nb, l)
		if dec := b.Check(ctx, l); !dec.Permanent || dec.RetryAfter != 0 {
			t.Fatalf("B's cached answer: %+v, want permanent", dec)
		}
		clk.Advance(24 * time.Hour)
		if dec := b.Check(ctx, l); !dec.Permanent {
			t.Fatalf("a cached permanent block ended: %+v", dec)
		}
	})
	t.Run("off", func(t *testing.T) {
		a, _, _, _, _ := twoNodes(t, false, func(c *Config) { c.BlockCacheTTL = 0 })
		if a.cache != nil {
			t.Fatal("BlockCacheTTL 0 made a cache")
		}
	})
}
