package faulttest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/bolt"
	"github.com/go-defender/defender/backend/memcached"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/backend/redis"
	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/internal/testserver"
)

var ctxBG = context.Background()

// quiet is a logger that drops everything (the engine logs every fail-mode
// transition; the tests assert on events instead).
var quiet = slog.New(slog.DiscardHandler)

// kit is one store under test: the backend defender uses (through the
// fault proxies, for network stores), a direct backend on the same data
// for verification, and the proxies.
type kit struct {
	name   string
	store  backend.Backend // what defender uses
	direct backend.Backend // the same data, not through a proxy
	faults []*fault        // the proxies (empty for in-process stores)
	kill   func()          // kills the server (nil: not possible)
	// revive brings a killed server back (memcached: the same process
	// restarted empty on its port; redis: a new empty server the proxy is
	// pointed at, k.direct then reading it).
	revive func()
}

// cut disables every proxy; restore enables them again.
func (k *kit) cut() {
	for _, f := range k.faults {
		f.cut()
	}
}

func (k *kit) restore() {
	for _, f := range k.faults {
		f.restore()
	}
}

func (k *kit) toxic(typ, stream, attrs string) {
	for _, f := range k.faults {
		f.toxic(typ, stream, attrs)
	}
}

func (k *kit) clear() {
	for _, f := range k.faults {
		f.clear()
	}
}

// closeAll registers Close of every closer, in order, at the test's end.
func closeAll(t testing.TB, cs ...io.Closer) {
	t.Cleanup(func() {
		for _, c := range cs {
			if c != nil {
				_ = c.Close()
			}
		}
	})
}

// redisKit starts a redis-server with a fault proxy in front of it.
func redisKit(t testing.TB) *kit {
	t.Helper()
	srv := testserver.StartRedisServer(t)
	f := newFault(t, srv.Addr)
	st, err := redis.Open(ctxBG, "redis://"+f.Addr+"?dial_timeout=200ms&pool_size=64")
	if err != nil {
		t.Fatal(err)
	}
	direct, err := redis.Open(ctxBG, "redis://"+srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, st, direct)
	k := &kit{name: "redis", store: st, direct: direct, faults: []*fault{f}, kill: srv.Kill}
	k.revive = func() {
		srv2 := testserver.StartRedisServer(t)
		f.retarget(srv2.Addr)
		d2, err := redis.Open(ctxBG, "redis://"+srv2.Addr)
		if err != nil {
			t.Fatal(err)
		}
		closeAll(t, d2)
		k.direct = d2
	}
	return k
}

// clusterKit starts a three-master Redis Cluster with one fault proxy per
// node. The client reaches every node through its proxy: a dialer maps the
// node addresses the cluster announces to the proxies.
func clusterKit(t testing.TB) *kit {
	t.Helper()
	rc := sharedCluster
	if rc == nil {
		t.Fatal("the shared Redis Cluster was not started (TestMain skips it when fuzzing)")
	}
	via := map[string]string{}
	var faults []*fault
	for _, n := range rc.Nodes {
		f := newFault(t, n.Addr)
		via[n.Addr] = f.Addr
		faults = append(faults, f)
	}
	var d net.Dialer
	client := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs: []string{faults[0].Addr},
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if p, ok := via[addr]; ok {
				addr = p
			}
			return d.DialContext(ctx, network, addr)
		},
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialTimeout:           200 * time.Millisecond,
		PoolSize:              64,
	})
	st := redis.New(client, nil)
	direct, err := redis.Open(ctxBG, "redis+cluster://"+rc.Nodes[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, st, client, direct)
	return &kit{name: "cluster", store: st, direct: direct, faults: faults}
}

// memcachedKit starts memcached with a fault proxy in front of it.
func memcachedKit(t testing.TB) *kit {
	t.Helper()
	m := testserver.NewMemcached(t)
	f := newFault(t, m.Addr)
	st, err := backend.Open(ctxBG, "memcached://"+f.Addr+"?timeout=200ms")
	if err != nil {
		t.Fatal(err)
	}
	direct, err := backend.Open(ctxBG, "memcached://"+m.Addr+"?timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, st, direct)
	return &kit{name: "memcached", store: st, direct: direct, faults: []*fault{f}, kill: m.Stop, revive: m.Start}
}

func memoryKit(t testing.TB) *kit {
	t.Helper()
	st, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, st)
	return &kit{name: "memory", store: st, direct: st}
}

func boltKit(t testing.TB) *kit {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "defender.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, st)
	return &kit{name: "bolt", store: st, direct: st}
}

var _ = memcached.DefaultTimeout // the package registers memcached://

// networkKits are the stores that sit behind fault proxies.
var networkKits = []struct {
	name string
	make func(testing.TB) *kit
}{
	{"redis", redisKit},
	{"cluster", clusterKit},
	{"memcached", memcachedKit},
}

// allKits are every backend.
var allKits = []struct {
	name string
	make func(testing.TB) *kit
}{
	{"memory", memoryKit},
	{"bolt", boltKit},
	{"redis", redisKit},
	{"cluster", clusterKit},
	{"memcached", memcachedKit},
}

// recorder collects events and metrics.
type recorder struct {
	mu      sync.Mutex
	events  []defender.Event
	slowest map[string]time.Duration // per store operation
	audit   []auditlog.Record

	failModes                     sync.Map // defender.FailMode -> *atomic.Int64
	attempts                      sync.Map // outcome -> *atomic.Int64
	blocks, storeCalls, storeErrs atomic.Int64
}

func (r *recorder) hook(ev defender.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// count returns how many events of kind were seen.
func (r *recorder) count(kind defender.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func counter(m *sync.Map, k any) *atomic.Int64 {
	v, _ := m.LoadOrStore(k, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// Record implements auditlog.Recorder: the records are kept in memory.
func (r *recorder) Record(rec auditlog.Record) {
	r.mu.Lock()
	r.audit = append(r.audit, rec)
	r.mu.Unlock()
}

// auditFailModes returns the FailMode of every audit record, in order.
func (r *recorder) auditFailModes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.audit))
	for i, a := range r.audit {
		out[i] = a.FailMode
	}
	return out
}

func (r *recorder) Attempt(outcome string)       { counter(&r.attempts, outcome).Add(1) }
func (r *recorder) Block(defender.Kind)          { r.blocks.Add(1) }
func (r *recorder) Unblock(defender.Kind)        {}
func (r *recorder) FailMode(m defender.FailMode) { counter(&r.failModes, m).Add(1) }
func (r *recorder) StoreCall(op string, d time.Duration, err error) {
	r.mu.Lock()
	if r.slowest == nil {
		r.slowest = map[string]time.Duration{}
	}
	r.slowest[op] = max(r.slowest[op], d)
	r.mu.Unlock()
	r.storeCalls.Add(1)
	if err != nil {
		r.storeErrs.Add(1)
	}
}

func (r *recorder) failModeCount(m defender.FailMode) int64 { return counter(&r.failModes, m).Load() }

// newDefender returns a Defender on store with cfg, events and metrics
// going to a new recorder; closed at the test's end (before the stores,
// which were registered earlier).
func newDefender(t testing.TB, store backend.Backend, cfg defender.Config) (*defender.Defender, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg.AuditCoalesceWindow = 0 // one audit record per attempt: the tests count them
	d, err := defender.New(store, cfg, &defender.Options{Hooks: []defender.Hook{rec.hook}, Metrics: rec, Audit: rec, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d, rec
}

// prefix returns a cache prefix unique to a test (stores are shared by
// subtests in some tests).
var prefixSeq atomic.Int64

func uniquePrefix() string { return fmt.Sprintf("ft%d", prefixSeq.Add(1)) }
