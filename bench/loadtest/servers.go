package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/go-defender/defender/internal/testserver"
)

// processTB is the testing.TB internal/testserver needs, for servers that
// live as long as this program: Cleanup functions run at stop, Fatalf
// panics with a startFailure that start turns into an error. Methods
// testserver does not use are not implemented (the embedded nil TB
// panics).
type processTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

type startFailure string

func (p *processTB) Helper()                   {}
func (p *processTB) Name() string              { return "loadtest" }
func (p *processTB) Failed() bool              { return false }
func (p *processTB) Log(a ...any)              { fmt.Fprintln(os.Stderr, a...) }
func (p *processTB) Logf(f string, a ...any)   { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (p *processTB) Error(a ...any)            { panic(startFailure(fmt.Sprint(a...))) }
func (p *processTB) Fatal(a ...any)            { panic(startFailure(fmt.Sprint(a...))) }
func (p *processTB) Errorf(f string, a ...any) { panic(startFailure(fmt.Sprintf(f, a...))) }
func (p *processTB) Fatalf(f string, a ...any) { panic(startFailure(fmt.Sprintf(f, a...))) }

func (p *processTB) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanups = append(p.cleanups, f)
	p.mu.Unlock()
}

func (p *processTB) TempDir() string {
	d, err := os.MkdirTemp("", "defender-loadtest-")
	if err != nil {
		panic(startFailure(err.Error()))
	}
	p.mu.Lock()
	p.dirs = append(p.dirs, d)
	p.mu.Unlock()
	return d
}

// stop runs the cleanups (stopping the servers) and removes the
// directories.
func (p *processTB) stop() {
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

// start calls fn with p, turning a testserver failure into an error.
func (p *processTB) start(fn func(t testing.TB) string) (v string, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(startFailure)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", string(f))
		}
	}()
	return fn(p), nil
}

// storeServers starts the servers the named backends need and returns the
// store URL of each backend. Backends: memory, bolt, redis, redis-cluster,
// memcached (bolt files live in dir).
func storeServers(p *processTB, names []string, dir string) (map[string]string, error) {
	urls := map[string]string{}
	for _, n := range names {
		var err error
		switch n {
		case "memory":
			urls[n] = "memory://"
		case "bolt":
			urls[n] = "bolt://" + dir + "/defender-%d.db"
		case "redis":
			var a string
			a, err = p.start(func(t testing.TB) string { return testserver.StartRedis(t) })
			urls[n] = "redis://" + a + "/0"
		case "redis-cluster":
			var a string
			a, err = p.start(func(t testing.TB) string {
				return strings.Join(testserver.StartRedisCluster(t, 3, 0).Addrs(), ",")
			})
			urls[n] = "redis+cluster://" + a
		case "memcached":
			var a string
			a, err = p.start(func(t testing.TB) string { return testserver.StartMemcached(t) })
			urls[n] = "memcached://" + a
		default:
			return nil, fmt.Errorf("unknown backend %q (want memory, bolt, redis, redis-cluster, memcached)", n)
		}
		if err != nil {
			return nil, fmt.Errorf("starting the %s server: %w", n, err)
		}
	}
	return urls, nil
}
