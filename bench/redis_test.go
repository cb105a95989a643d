package bench

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/redis"
	"github.com/go-defender/defender/conformance"
)

func init() {
	register(store{name: "redis", open: openRedis, parallelism: netParallelism, footprint: redisFootprint,
		traffic: func(b *testing.B) map[string]float64 { return redisTraffic(b, []string{redisAddr(b)}) }})
	register(store{name: "redis-cluster", open: openRedisCluster, parallelism: netParallelism,
		traffic: func(b *testing.B) map[string]float64 { return redisTraffic(b, redisClusterAddrs(b)) }})
	pairedFloors["redis"] = conformance.Floor{Setup: func(b *testing.B) func(int) error {
		c := redisClient(redisAddr(b))
		b.Cleanup(func() { c.Close() })
		return func(int) error { return c.Ping(ctx).Err() }
	}}
	pairedFloors["redis-cluster"] = conformance.Floor{Setup: func(b *testing.B) func(int) error {
		c := clusterClient(redisClusterAddrs(b))
		b.Cleanup(func() { c.Close() })
		return func(int) error { return c.Ping(ctx).Err() }
	}}
	floors = append(floors,
		floor{"redis", "redis-ping", func(b *testing.B) {
			c := redisClient(redisAddr(b))
			defer c.Close()
			conformance.BenchFloor(b, conformance.Floor{Setup: func(*testing.B) func(int) error {
				return func(int) error { return c.Ping(ctx).Err() }
			}}, netParallelism)
		}},
		floor{"redis-cluster", "redis-cluster-ping", func(b *testing.B) {
			c := clusterClient(redisClusterAddrs(b))
			defer c.Close()
			conformance.BenchFloor(b, conformance.Floor{Setup: func(*testing.B) func(int) error {
				return func(int) error { return c.Ping(ctx).Err() }
			}}, netParallelism)
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

// redisTraffic sums over the servers at addrs: scripts/op, the EVAL and
// EVALSHA calls (each is one round trip); cmds/op, every command executed,
// those run inside scripts included (INFO commandstats, INFO itself
// excluded); server-us/op, the server process's CPU time, network I/O
// included (INFO cpu); net-B/op, the bytes in and out (INFO stats).
func redisTraffic(b *testing.B, addrs []string) map[string]float64 {
	m := map[string]float64{"scripts/op": 0, "cmds/op": 0, "net-B/op": 0, "server-us/op": 0}
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		info, err := c.Info(ctx, "commandstats", "stats", "cpu").Result()
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			line = strings.TrimSpace(line)
			if rest, ok := strings.CutPrefix(line, "cmdstat_"); ok && !strings.HasPrefix(rest, "info:") {
				name, stats, _ := strings.Cut(rest, ":")
				for _, kv := range strings.Split(stats, ",") {
					if v, ok := strings.CutPrefix(kv, "calls="); ok {
						n, _ := strconv.ParseFloat(v, 64)
						m["cmds/op"] += n
						if name == "evalsha" || name == "eval" {
							m["scripts/op"] += n
						}
					}
				}
			}
			for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
				if v, ok := strings.CutPrefix(line, k); ok {
					n, _ := strconv.ParseFloat(v, 64)
					m["server-us/op"] += n * 1e6
				}
			}
			for _, k := range []string{"total_net_input_bytes:", "total_net_output_bytes:"} {
				if v, ok := strings.CutPrefix(line, k); ok {
					n, _ := strconv.ParseFloat(v, 64)
					m["net-B/op"] += n
				}
			}
		}
	}
	return m
}
