package redis

import (
	"testing"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/conformance"
	"github.com/go-defender/defender/internal/testserver"
	goredis "github.com/redis/go-redis/v9"
)

func TestConformanceStandalone(t *testing.T) {
	t.Parallel()
	_, c := standalone(t)
	conformance.Run(t, func(t *testing.T) backend.Backend {
		return New(c, &Options{Prefix: uniquePrefix()})
	})
	if !t.Failed() {
		t.Log("conformance: standalone PASS")
	}
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	rc := testserver.StartRedisCluster(t, 3, 0)
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: rc.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	conformance.Run(t, func(t *testing.T) backend.Backend {
		return New(c, &Options{Prefix: uniquePrefix()})
	})
	if !t.Failed() {
		t.Log("conformance: cluster PASS")
	}
}

func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	rs := testserver.StartRedisSentinel(t)
	c := goredis.NewFailoverClient(&goredis.FailoverOptions{
		MasterName: testserver.SentinelMaster, SentinelAddrs: []string{rs.Sentinel.Addr},
		ContextTimeoutEnabled: true, MaxRetries: -1,
	})
	t.Cleanup(func() { _ = c.Close() })
	conformance.Run(t, func(t *testing.T) backend.Backend {
		return New(c, &Options{Prefix: uniquePrefix()})
	})
	if !t.Failed() {
		t.Log("conformance: sentinel PASS")
	}
}

func TestConformanceRing(t *testing.T) {
	t.Parallel()
	a, b := testserver.StartRedis(t), testserver.StartRedis(t)
	c := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": a, "b": b}, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	conformance.Run(t, func(t *testing.T) backend.Backend {
		return New(c, &Options{Prefix: uniquePrefix()})
	})
	if !t.Failed() {
		t.Log("conformance: ring PASS")
	}
}

// TestConformanceSentinelCluster: go-redis's failover cluster client (what
// NewUniversalClient returns for a master name with RouteByLatency or
// RouteRandomly) on Sentinel.
func TestConformanceSentinelCluster(t *testing.T) {
	t.Parallel()
	rs := testserver.StartRedisSentinel(t)
	c := goredis.NewFailoverClusterClient(&goredis.FailoverOptions{
		MasterName: testserver.SentinelMaster, SentinelAddrs: []string{rs.Sentinel.Addr},
		ContextTimeoutEnabled: true, RouteRandomly: true,
	})
	t.Cleanup(func() { _ = c.Close() })
	conformance.Run(t, func(t *testing.T) backend.Backend {
		return New(c, &Options{Prefix: uniquePrefix()})
	})
	if !t.Failed() {
		t.Log("conformance: sentinel (failover cluster client) PASS")
	}
}
