package faulttest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/go-defender/defender/internal/testserver"
)

// childEnv is set when the test binary runs as a bolt crash child.
const childEnv = "FAULTTEST_BOLT_CHILD"

// sharedCluster is one Redis Cluster (three masters) for the whole test
// binary: creating a cluster takes seconds, and `redis-cli --cluster
// create` can wait forever when a node's bus port was taken meanwhile by
// one of the many loopback connections the parallel tests open. Each test
// reaches it through fault proxies of its own and uses a cache prefix of
// its own.
var sharedCluster *testserver.RedisCluster

// TestMain starts the shared cluster, runs the tests, stops the servers,
// then checks that no goroutine outlived them. A test binary re-executed
// as a bolt crash child runs the child instead.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(boltChild())
	}
	// go-redis logs every failed dial of the outages these tests cause.
	goredis.SetLogger(discardRedisLog{})
	tb := &mainTB{}
	code := func() (code int) {
		defer tb.cleanup()
		defer func() {
			if p := recover(); p != nil {
				if _, ok := p.(mainFatal); !ok {
					panic(p)
				}
				fmt.Fprintln(os.Stderr, "faulttest: setup failed:", tb.msg)
				code = 1
			}
		}()
		if !fuzzing() {
			sharedCluster = testserver.StartRedisCluster(tb, 3, 0)
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// fuzzing reports a fuzzing run (coordinator or worker), which needs no
// servers: the fuzz targets are in-process.
func fuzzing() bool {
	flag.Parse()
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// mainTB is the testing.TB of TestMain's shared servers: Fatalf ends the
// setup, Cleanup functions run after the tests. Methods testserver does
// not use are not implemented (the embedded nil TB panics).
type mainTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
	msg      string
}

type mainFatal struct{}

func (tb *mainTB) Helper()      {}
func (tb *mainTB) Name() string { return "TestMain" }
func (tb *mainTB) Fatalf(format string, args ...any) {
	tb.msg = fmt.Sprintf(format, args...)
	panic(mainFatal{})
}
func (tb *mainTB) Fatal(args ...any)                 { tb.Fatalf("%s", fmt.Sprint(args...)) }
func (tb *mainTB) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (tb *mainTB) Logf(format string, args ...any)   {}
func (tb *mainTB) Cleanup(f func()) {
	tb.mu.Lock()
	tb.cleanups = append(tb.cleanups, f)
	tb.mu.Unlock()
}

func (tb *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "faulttest")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.mu.Lock()
	tb.dirs = append(tb.dirs, d)
	tb.mu.Unlock()
	return d
}

func (tb *mainTB) cleanup() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
	for _, d := range tb.dirs {
		_ = os.RemoveAll(d)
	}
}

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}
