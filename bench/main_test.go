package bench

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/go-defender/defender/internal/testserver"
)

// TestMain stops the servers the benchmarks started, once, after every
// benchmark ran (with -count 6 they are shared by all six rounds).
func TestMain(m *testing.M) {
	code := m.Run()
	shared.cleanup()
	os.Exit(code)
}

// processTB is the testing.TB given to internal/testserver for servers that
// live as long as the test binary: its Cleanup functions run from TestMain,
// and Fatalf panics with a startFailure, which startShared turns into a
// benchmark failure. Methods testserver does not use are not implemented
// (the embedded nil TB panics).
type processTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

type startFailure string

func (p *processTB) Helper()        {}
func (p *processTB) Name() string   { return "bench" }
func (p *processTB) Failed() bool   { return false }
func (p *processTB) Log(a ...any)   { fmt.Fprintln(os.Stderr, a...) }
func (p *processTB) Error(a ...any) { panic(startFailure(fmt.Sprint(a...))) }
func (p *processTB) Fatal(a ...any) { panic(startFailure(fmt.Sprint(a...))) }
func (p *processTB) Logf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, f+"\n", a...)
}
func (p *processTB) Errorf(f string, a ...any) { panic(startFailure(fmt.Sprintf(f, a...))) }
func (p *processTB) Fatalf(f string, a ...any) { panic(startFailure(fmt.Sprintf(f, a...))) }

func (p *processTB) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanups = append(p.cleanups, f)
	p.mu.Unlock()
}

func (p *processTB) TempDir() string {
	d, err := os.MkdirTemp("", "defender-bench-")
	if err != nil {
		panic(startFailure(err.Error()))
	}
	p.mu.Lock()
	p.dirs = append(p.dirs, d)
	p.mu.Unlock()
	return d
}

func (p *processTB) cleanup() {
	p.mu.Lock()
	fs, ds := p.cleanups, p.dirs
	p.cleanups, p.dirs = nil, nil
	p.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, d := range ds {
		os.RemoveAll(d)
	}
}

// servers are the shared server processes, each started on first use.
type servers struct {
	processTB
	once  map[string]*sync.Once
	addrs map[string]any
	errs  map[string]string
	mu    sync.Mutex
}

var shared = &servers{once: map[string]*sync.Once{}, addrs: map[string]any{}, errs: map[string]string{}}

// start returns what start returned the first time it was called for name
// (a server address or handle), failing b if starting failed.
func (s *servers) start(b testing.TB, name string, start func(t testing.TB) any) any {
	b.Helper()
	s.mu.Lock()
	o, ok := s.once[name]
	if !ok {
		o = new(sync.Once)
		s.once[name] = o
	}
	s.mu.Unlock()
	o.Do(func() {
		defer func() {
			if p := recover(); p != nil {
				if f, ok := p.(startFailure); ok {
					s.mu.Lock()
					s.errs[name] = string(f)
					s.mu.Unlock()
					return
				}
				panic(p)
			}
		}()
		v := start(&s.processTB)
		s.mu.Lock()
		s.addrs[name] = v
		s.mu.Unlock()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.errs[name]; ok {
		b.Fatalf("starting %s: %s", name, e)
	}
	return s.addrs[name]
}

func redisAddr(b testing.TB) string {
	return shared.start(b, "redis", func(t testing.TB) any { return testserver.StartRedis(t) }).(string)
}

func redisClusterAddrs(b testing.TB) []string {
	return shared.start(b, "redis-cluster", func(t testing.TB) any {
		return testserver.StartRedisCluster(t, 3, 0).Addrs()
	}).([]string)
}

func memcachedAddr(b testing.TB) string {
	// 1 GB (allocated as used): the benchmarks never fill it, so no
	// eviction disturbs BenchmarkKeyMemory.
	return shared.start(b, "memcached", func(t testing.TB) any { return testserver.NewMemcached(t, "-m", "1024").Addr }).(string)
}
