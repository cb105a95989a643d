package stacktest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	defenderredis "github.com/go-defender/defender/backend/redis"
	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/internal/testserver"
)

// switchProxy forwards TCP to a Redis server while up; Down cuts every
// connection and refuses new ones (a server that went away), Up restores.
type switchProxy struct {
	ln       net.Listener
	upstream string
	down     atomic.Bool
	mu       sync.Mutex
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
}

func startSwitchProxy(t *testing.T, upstream string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, upstream: upstream, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *switchProxy) Addr() string { return p.ln.Addr().String() }

func (p *switchProxy) Down() { p.down.Store(true); p.cut() }
func (p *switchProxy) Up()   { p.down.Store(false) }

func (p *switchProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *switchProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(u, c)
		go pipe(c, u)
	}
}

// TestFailModes runs the engine on the Redis store through an outage: the
// login decision comes within the store deadline plus a margin, per the
// fail mode, never an unexpected error, and counting resumes on recovery.
func TestFailModes(t *testing.T) {
	addr := testserver.StartRedis(t)
	const timeout = 100 * time.Millisecond
	const margin = 250 * time.Millisecond
	for _, tc := range []struct {
		mode defender.FailMode
		// during the outage
		verdict defender.Verdict
	}{
		{defender.FailClosed, defender.Unavailable},
		{defender.FailOpen, defender.Allow},
		{defender.FailLocal, defender.Allow},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			p := startSwitchProxy(t, addr)
			st, err := defenderredis.Open(context.Background(), "redis://"+p.Addr()+"?prefix="+string(tc.mode)+":")
			if err != nil {
				t.Fatal(err)
			}
			cfg := defender.DefaultConfig()
			cfg.StoreTimeout = timeout
			cfg.FailMode = tc.mode
			cfg.FailureLimit = 3
			cfg.StoreAccessAttempts = false
			d, err := defender.New(st, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close(); st.Close() })
			ctx := context.Background()
			l := defender.Login{IP: netip.MustParseAddr("192.0.2.7"), Username: "alice"}
			attempt := func() (defender.Decision, time.Duration) {
				start := time.Now()
				a := d.Attempt(ctx, l)
				dec := a.Decision()
				if dec.Verdict == defender.Allow {
					dec = a.Failed(ctx)
				}
				return dec, time.Since(start)
			}
			// Up: two failures counted in Redis.
			for i := 0; i < 2; i++ {
				if dec, _ := attempt(); dec.Verdict != defender.Allow || dec.Err != nil {
					t.Fatalf("attempt %d while up: %+v", i, dec)
				}
			}
			p.Down()
			dec, took := attempt()
			// The local mode answers from its memory store: no error.
			if dec.Verdict != tc.verdict || dec.FailMode != tc.mode || (tc.mode != defender.FailLocal && !errors.Is(dec.Err, backend.ErrUnavailable)) {
				t.Errorf("while down: %+v, want %v by fail mode %s with ErrUnavailable", dec, tc.verdict, tc.mode)
			}
			if took > 2*timeout+margin {
				t.Errorf("decision while down took %v (store timeout %v)", took, timeout)
			}
			p.Up()
			// Recovery: the store answers again and counts on from 2 (the
			// attempt during the outage never reached Redis).
			deadline := time.Now().Add(5 * time.Second)
			for {
				dec, _ = attempt()
				if dec.FailMode == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("store never answered again: %+v", dec)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// That was failure 3 (allowed); failure 4 locks.
			if dec.Verdict != defender.Allow {
				t.Fatalf("third failure after recovery: %+v", dec)
			}
			if dec, _ = attempt(); dec.Verdict != defender.Locked {
				t.Fatalf("fourth failure after recovery: %+v, want Locked (counting resumed in Redis)", dec)
			}
			t.Logf("fail mode %s: outage answered %v in %v; counting resumed after recovery", tc.mode, tc.verdict, took.Round(time.Millisecond))
		})
	}
}
