package bench

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/redis"
)

func init() {
	register(store{name: "redis", open: openRedis, parallelism: netParallelism, footprint: redisFootprint})
	register(store{name: "redis-cluster", open: openRedisCluster, parallelism: netParallelism})
	floors = append(floors,
		floor{"redis", "redis-ping", func(b *testing.B) {
			c := redisClient(redisAddr(b))
			defer c.Close()
			roundTrip(b, netParallelism, func() error { return c.Ping(ctx).Err() })
		}},
		floor{"redis-cluster", "redis-cluster-ping", func(b *testing.B) {
			c := clusterClient(redisClusterAddrs(b))
			defer c.Close()
			roundTrip(b, netParallelism, func() error { return c.Ping(ctx).Err() })
		}},
	)
}

func redisClient(addr string) *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, PoolSize: 64})
}

func clusterClient(addrs []string) *goredis.ClusterClient {
	return goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true, PoolSize: 64})
}

func openRedis(b *testing.B) backend.Backend {
	c := redisClient(redisAddr(b))
	s := redis.New(c, &redis.Options{Prefix: fmt.Sprintf("bench%d:", seq.Add(1))})
	b.Cleanup(func() { s.Close(); c.Close() })
	return s
}

func openRedisCluster(b *testing.B) backend.Backend {
	c := clusterClient(redisClusterAddrs(b))
	s := redis.New(c, &redis.Options{Prefix: fmt.Sprintf("bench%d:", seq.Add(1))})
	b.Cleanup(func() { s.Close(); c.Close() })
	return s
}

// redisFootprint is the server's used_memory and its number of keys.
func redisFootprint(b *testing.B, st backend.Backend) (float64, float64) {
	c := st.(*redis.Store).Client()
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	var used float64
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			used, _ = strconv.ParseFloat(v, 64)
		}
	}
	n, err := c.DBSize(ctx).Result()
	if err != nil {
		b.Fatal(err)
	}
	return used, float64(n)
}
