package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/conformance"
	"github.com/go-defender/defender/internal/testserver"
)

// runNotifier runs conformance.RunNotifier on stores over two clients that
// newClient makes (two processes sharing the store), each pair under a
// fresh prefix.
func runNotifier(t *testing.T, newClient func() goredis.UniversalClient) {
	t.Helper()
	ca, cb := newClient(), newClient()
	t.Cleanup(func() { _ = ca.Close(); _ = cb.Close() })
	conformance.RunNotifier(t, func(t *testing.T) (a, b backend.Backend) {
		p := uniquePrefix()
		return New(ca, &Options{Prefix: p}), New(cb, &Options{Prefix: p})
	})
}

func TestNotifierConformanceStandalone(t *testing.T) {
	t.Parallel()
	addr := testserver.StartRedis(t)
	runNotifier(t, func() goredis.UniversalClient {
		return goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	})
}

func TestNotifierConformanceCluster(t *testing.T) {
	t.Parallel()
	rc := testserver.StartRedisCluster(t, 3, 0)
	runNotifier(t, func() goredis.UniversalClient {
		return goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: rc.Addrs(), ContextTimeoutEnabled: true})
	})
}

func TestNotifierConformanceSentinel(t *testing.T) {
	t.Parallel()
	rs := testserver.StartRedisSentinel(t)
	runNotifier(t, func() goredis.UniversalClient {
		return goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName: testserver.SentinelMaster, SentinelAddrs: []string{rs.Sentinel.Addr},
			ContextTimeoutEnabled: true, MaxRetries: -1,
		})
	})
}

// TestNotifierConformanceSentinelCluster: the failover cluster client with
// RouteRandomly subscribes on a replica (it is ReadOnly); the master
// replicates PUBLISH to it.
func TestNotifierConformanceSentinelCluster(t *testing.T) {
	t.Parallel()
	rs := testserver.StartRedisSentinel(t)
	runNotifier(t, func() goredis.UniversalClient {
		return goredis.NewFailoverClusterClient(&goredis.FailoverOptions{
			MasterName: testserver.SentinelMaster, SentinelAddrs: []string{rs.Sentinel.Addr},
			ContextTimeoutEnabled: true, RouteRandomly: true,
		})
	})
}

func TestNotifierConformanceRing(t *testing.T) {
	t.Parallel()
	a, b := testserver.StartRedis(t), testserver.StartRedis(t)
	runNotifier(t, func() goredis.UniversalClient {
		return goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": a, "b": b}, ContextTimeoutEnabled: true, MaxRetries: -1})
	})
}
