package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

// lossyProxy forwards TCP between clients and a Redis server. When dropNext
// is set, the next reply from the server is swallowed and the client's
// connection reset: the command ran, its reply was lost.
type lossyProxy struct {
	ln       net.Listener
	upstream string
	dropNext atomic.Bool
	dropped  atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startLossyProxy(t *testing.T, upstream string) *lossyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{ln: ln, upstream: upstream}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *lossyProxy) Addr() string { return p.ln.Addr().String() }

func (p *lossyProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(u, c)
			u.Close()
		}()
		go func() {
			defer p.wg.Done()
			defer c.Close()
			defer u.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := u.Read(buf)
				if n > 0 {
					if p.dropNext.CompareAndSwap(true, false) {
						p.dropped.Add(1)
						if tc, ok := c.(*net.TCPConn); ok {
							_ = tc.SetLinger(0)
						}
						return
					}
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// TestLostReplyNotResent: a client that retries (MaxRetries 3, go-redis's
// default) must not resend an increment whose reply was lost.
func TestLostReplyNotResent(t *testing.T) {
	srv, direct := standalone(t)
	p := startLossyProxy(t, srv.Addr)
	c := goredis.NewClient(&goredis.Options{Addr: p.Addr(), MaxRetries: 3, ContextTimeoutEnabled: true, PoolSize: 1})
	t.Cleanup(func() { _ = c.Close() })
	s := New(c, nil)
	ctx := tctx(t)
	key := "{user:bob}:f"
	blockReq := backend.BlockRequest{
		BlockKey: "{user:bob}:b", Value: []byte("x"), CounterKey: key,
		LockoutsKey: "{user:bob}:n", Window: time.Hour, Durations: []time.Duration{time.Minute},
	}
	res := backend.Reservation{Blocks: []string{"{user:bob}:b"}, Counters: []string{key}, TTL: time.Hour}
	// Load the scripts and warm the connection.
	mustIncr(t, s, []string{key}, 1, time.Hour)
	if err := s.Reserve(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Block(ctx, blockReq); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, blockReq.BlockKey, blockReq.LockoutsKey); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		op   func() error
		key  string
		want string
	}{
		{"Incr", func() error { _, err := s.Incr(ctx, []string{key}, 1, time.Hour); return err }, key, "1"},
		{"Reserve", func() error { return s.Reserve(ctx, &res) }, key, "2"},
		{"Block", func() error { _, err := s.Block(ctx, blockReq); return err }, blockReq.LockoutsKey, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "Block" {
				if err := direct.Set(ctx, key, "0", time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name == "Reserve" {
				if err := direct.Set(ctx, key, "1", time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
			}
			// The connection is up, so the next reply is the script's.
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			p.dropNext.Store(true)
			err := tc.op()
			if !errors.Is(err, backend.ErrUnavailable) {
				t.Fatalf("%s with a lost reply: %v, want ErrUnavailable", tc.name, err)
			}
			if p.dropped.Load() == 0 {
				t.Fatal("the proxy dropped nothing")
			}
			if v := direct.Get(ctx, tc.key).Val(); v != tc.want {
				t.Fatalf("%s after a lost reply: %s = %q, want %q (counted exactly once)", tc.name, tc.key, v, tc.want)
			}
		})
	}
	// The store is usable again afterwards.
	if _, err := s.Incr(ctx, []string{key}, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
}

func TestOneShotGuard(t *testing.T) {
	for _, tc := range []struct {
		prev  error
		allow bool
	}{
		{nil, false},
		{io.EOF, false},
		{errors.New("i/o timeout"), false},
		{goredis.Nil, false},
		{serverErr(t, "MOVED 1 127.0.0.1:1"), true},
		{serverErr(t, "ASK 1 127.0.0.1:1"), true},
		{serverErr(t, "TRYAGAIN x"), true},
		{serverErr(t, "LOADING x"), true},
		{serverErr(t, "READONLY x"), true},
		{serverErr(t, "CLUSTERDOWN x"), true},
		{serverErr(t, "MASTERDOWN x"), true},
		{serverErr(t, "NOSCRIPT x"), true},
		{serverErr(t, "ERR something"), false},
	} {
		cmd := goredis.NewCmd(context.Background(), "evalsha")
		g := &oneShot{cmd: cmd}
		if b, err := g.MarshalBinary(); err != nil || string(b) != "1" {
			t.Fatalf("first write: %q, %v", b, err)
		}
		cmd.SetErr(tc.prev)
		_, err := g.MarshalBinary()
		if (err == nil) != tc.allow {
			t.Errorf("second write after %v: err %v, want allowed=%v", tc.prev, err, tc.allow)
		}
	}
}

var errServers sync.Map // *testing.T -> address

// serverErr returns a real go-redis server error with message msg, made by
// a Lua error reply on a server started for t.
func serverErr(t *testing.T, msg string) error {
	t.Helper()
	addr, ok := errServers.Load(t)
	if !ok {
		addr = testserver.StartRedis(t)
		errServers.Store(t, addr)
		t.Cleanup(func() { errServers.Delete(t) })
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr.(string), MaxRetries: -1})
	defer c.Close()
	err := c.Eval(context.Background(), "return redis.error_reply(ARGV[1])", nil, msg).Err()
	// go-redis may reword an error it knows (NOSCRIPT): the kind, the
	// first word, is what matters.
	if err == nil || strings.Fields(err.Error())[0] != strings.Fields(msg)[0] {
		t.Fatalf("server error %q: got %v", msg, err)
	}
	return err
}

// TestUnavailable: a dead server, a hung server and a read-only replica give
// ErrUnavailable quickly, for every operation.
func TestUnavailable(t *testing.T) {
	master := testserver.StartRedisServer(t)
	replica := testserver.StartRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	dead := testserver.Addr(testserver.FreePort(t))
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var hmu sync.Mutex
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			hmu.Lock()
			held = append(held, c)
			hmu.Unlock()
		}
	}()
	t.Cleanup(func() {
		hung.Close()
		hmu.Lock()
		for _, c := range held {
			c.Close()
		}
		hmu.Unlock()
	})
	const deadline = 100 * time.Millisecond
	ops := []struct {
		name  string
		write bool
		op    func(ctx context.Context, s *Store) error
	}{
		{"Incr", true, func(ctx context.Context, s *Store) error {
			_, err := s.Incr(ctx, []string{"k"}, 1, time.Minute)
			return err
		}},
		{"SetBlock", true, func(ctx context.Context, s *Store) error { return s.SetBlock(ctx, "b", []byte("v"), time.Minute) }},
		{"Delete", true, func(ctx context.Context, s *Store) error { return s.Delete(ctx, "k") }},
		{"Reserve", true, func(ctx context.Context, s *Store) error {
			return s.Reserve(ctx, &backend.Reservation{Blocks: []string{"b"}, Counters: []string{"k"}, TTL: time.Minute})
		}},
		{"Block", true, func(ctx context.Context, s *Store) error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "n", CounterKey: "k", Durations: []time.Duration{time.Minute}})
			return err
		}},
		{"Get", false, func(ctx context.Context, s *Store) error { _, err := s.Get(ctx, []string{"k"}); return err }},
		{"Scan", false, func(ctx context.Context, s *Store) error { _, _, err := s.Scan(ctx, "", "", 10); return err }},
	}
	for _, srv := range []struct {
		name string
		open func(t *testing.T) *Store
		// writesOnly: only writes fail (a replica serves reads).
		writesOnly bool
	}{
		{"dead/url", func(t *testing.T) *Store {
			s, err := Open(context.Background(), "redis://"+dead+"/0")
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, false},
		{"dead/client", func(t *testing.T) *Store {
			c := goredis.NewClient(&goredis.Options{Addr: dead, ContextTimeoutEnabled: true})
			t.Cleanup(func() { _ = c.Close() })
			return New(c, nil)
		}, false},
		{"hung", func(t *testing.T) *Store {
			s, err := Open(context.Background(), "redis://"+hung.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, false},
		{"replica", func(t *testing.T) *Store {
			s, err := Open(context.Background(), "redis://"+replica.Addr)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, true},
	} {
		t.Run(srv.name, func(t *testing.T) {
			s := srv.open(t)
			t.Cleanup(func() { _ = s.Close() })
			var times []time.Duration
			for _, op := range ops {
				if srv.writesOnly && !op.write {
					// A replica serves reads.
					if err := op.op(tctx(t), s); err != nil {
						t.Errorf("%s on a replica: %v", op.name, err)
					}
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				err := op.op(ctx, s)
				took := time.Since(start)
				cancel()
				times = append(times, took)
				if !errors.Is(err, backend.ErrUnavailable) {
					t.Errorf("%s: %v, want ErrUnavailable", op.name, err)
				}
				// A call that ignored its deadline would take go-redis's
				// 3s read timeout or 500ms of dial retries; the margin is
				// scheduling delay on a loaded machine.
				if took > deadline+1500*time.Millisecond {
					t.Errorf("%s took %v with a %v deadline", op.name, took, deadline)
				}
				t.Logf("%s: %v in %v", op.name, err, took.Round(time.Millisecond))
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			if med := times[len(times)/2]; med > deadline+300*time.Millisecond {
				t.Errorf("median call took %v with a %v deadline", med, deadline)
			}
		})
	}
}

// TestErrorMapping: server replies other than availability errors are not
// ErrUnavailable.
func TestErrorMapping(t *testing.T) {
	_, c := standalone(t)
	s := openStore(t, c)
	ctx := tctx(t)
	if err := s.SetBlock(ctx, "b", []byte("not a number"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := s.Incr(ctx, []string{"b"}, 1, 0)
	if err == nil || errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "defender/redis: incr") {
		t.Fatalf("Incr on a block value: %v, want a plain script error", err)
	}
	for _, msg := range []string{"READONLY x", "LOADING x", "CLUSTERDOWN x", "MASTERDOWN x", "TRYAGAIN x", "OOM x", "BUSY x", "ERR max number of clients reached"} {
		if err := s.wrap("op", serverErr(t, msg)); !errors.Is(err, backend.ErrUnavailable) {
			t.Errorf("%q: %v, want ErrUnavailable", msg, err)
		}
	}
	if err := s.wrap("op", serverErr(t, "WRONGTYPE x")); errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("WRONGTYPE mapped to ErrUnavailable: %v", err)
	}
	if err := s.wrap("", io.EOF); !errors.Is(err, backend.ErrUnavailable) || !errors.Is(err, io.EOF) {
		t.Errorf("EOF: %v", err)
	}
}

// TestCommandsPerCheck counts server commands with INFO commandstats: a
// login check (Reserve) and a block (Block) are one EVALSHA each, nothing
// else.
func TestCommandsPerCheck(t *testing.T) {
	srv, c := standalone(t)
	rt := &roundTrips{}
	c.AddHook(rt)
	s := openStore(t, c)
	ctx := tctx(t)
	admin := srv.Client()
	r := backend.Reservation{
		Blocks:   []string{"defender:{ip:1.2.3.4}:b", "defender:{user:bob}:b"},
		Counters: []string{"defender:{ip:1.2.3.4}:f", "defender:{user:bob}:f"},
		TTL:      time.Minute,
	}
	breq := func(i int) backend.BlockRequest {
		return backend.BlockRequest{
			BlockKey: "defender:{ip:1.2.3." + strconv.Itoa(i) + "}:b", Value: []byte("v"),
			CounterKey:  "defender:{ip:1.2.3." + strconv.Itoa(i) + "}:f",
			LockoutsKey: "defender:{ip:1.2.3." + strconv.Itoa(i) + "}:n",
			Window:      time.Hour, Durations: []time.Duration{time.Minute, 2 * time.Minute},
		}
	}
	// Load the scripts first (the NOSCRIPT fallback is once per server).
	if err := s.Reserve(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Block(ctx, breq(0)); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for _, tc := range []struct {
		name string
		op   func(i int) error
		// want is INFO commandstats after n calls: EVALSHA from the
		// client, the rest run inside the script.
		want map[string]int
	}{
		{"Reserve", func(int) error { return s.Reserve(ctx, &r) },
			map[string]int{"evalsha": n, "get": 2 * n, "incr": 2 * n, "pexpire": 2 * n}},
		{"Block", func(i int) error { _, err := s.Block(ctx, breq(i)); return err },
			map[string]int{"evalsha": n, "incr": n, "pexpire": n, "set": n, "del": n}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := admin.ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			rt.n.Store(0)
			for i := 1; i <= n; i++ {
				if err := tc.op(i); err != nil {
					t.Fatal(err)
				}
			}
			stats := commandStats(t, admin)
			delete(stats, "config|resetstat")
			if fmt.Sprint(stats) != fmt.Sprint(tc.want) {
				t.Errorf("%d calls of %s: commandstats %v, want %v", n, tc.name, stats, tc.want)
			}
			if got := rt.n.Load(); got != n {
				t.Errorf("%d calls of %s: %d round trips", n, tc.name, got)
			}
			t.Logf("%d %s calls: %d round trips, commandstats %v (EVALSHA from the client, the rest inside the script)", n, tc.name, rt.n.Load(), stats)
		})
	}
}

// roundTrips is a go-redis hook counting round trips: each command or
// pipeline sent is one.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// commandStats returns calls per command from INFO commandstats.
func commandStats(t *testing.T, c *goredis.Client) map[string]int {
	t.Helper()
	txt, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(txt, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				out[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.Atoi(v)
			}
		}
	}
	return out
}
