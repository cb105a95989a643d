package testserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartRedis(t *testing.T) {
	ctx := context.Background()
	addr := StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	cfg, err := c.ConfigGet(ctx, "save").Result()
	if err != nil || cfg["save"] != "" {
		t.Fatalf("persistence on: %v %v", cfg, err)
	}
}

func TestRedisServerStopKill(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		stop func(*RedisServer)
	}{
		{"stop", (*RedisServer).Stop},
		{"kill", (*RedisServer).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := StartRedisServer(t)
			if err := s.Client().Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			tc.stop(s)
			tc.stop(s) // idempotent
			if err := WaitTCP(s.Addr, 50*time.Millisecond); err == nil {
				t.Fatal("server still accepts connections")
			}
			if s.Log() == "" {
				t.Error("no log")
			}
		})
	}
}

func TestRedisServerRestart(t *testing.T) {
	ctx := context.Background()
	s := StartRedisServer(t)
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Restart()
	if s.Addr != Addr(s.Port) {
		t.Fatalf("Addr %s after restart, want port %d", s.Addr, s.Port)
	}
	// The same port, an empty server (no persistence).
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after restart = %d, %v; want 0, nil", n, err)
	}
	s.Kill()
	if err := WaitTCP(s.Addr, 50*time.Millisecond); err == nil {
		t.Fatal("restarted server still accepts connections after Kill")
	}
	s.Restart() // stopped again by the test's cleanup
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after the second restart: %v", err)
	}
}

func TestRedisServerRestartRunning(t *testing.T) {
	s := StartRedisServer(t)
	ft := &fatalT{TB: t}
	s.t = ft
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Restart()
	}()
	<-done
	if !ft.failed {
		t.Fatal("Restart of a running server did not fail the test")
	}
}

func TestStartRedisCluster(t *testing.T) {
	ctx := context.Background()
	rc := StartRedisCluster(t, 3, 1)
	if len(rc.Addrs()) != 6 {
		t.Fatalf("nodes = %d", len(rc.Addrs()))
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer c.Close()
	for _, k := range []string{"a", "b", "c", "{x}1"} {
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	m, err := rc.MasterOf(ctx, "{x}1")
	if err != nil {
		t.Fatal(err)
	}
	if role, _ := m.Role(ctx); role != "master" {
		t.Fatalf("MasterOf gave a %s", role)
	}
	r, err := rc.ReplicaOf(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Failover(ctx, r, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if m2, err := rc.MasterOf(ctx, "{x}1"); err != nil || m2 != r {
		t.Fatalf("after failover master = %v, %v; want %s", m2, err, r.Addr)
	}
	// The old master is now a replica of r: once it is in sync, crash r and
	// wait for m to take over.
	if err := rc.WaitOK(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rc.KillAndWaitPromotion(ctx, r, m, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "{x}1").Result(); err != nil || v != "v" {
		t.Fatalf("GET after failovers = %q, %v", v, err)
	}
	if _, err := rc.node("127.0.0.1:1"); err == nil {
		t.Error("node of unknown address")
	}
	if _, err := rc.ReplicaOf(ctx, r); err == nil {
		t.Error("replica of a dead master")
	}
}

func TestStartRedisClusterTooSmall(t *testing.T) {
	ft := &fatalT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartRedisCluster(ft, 2, 0)
	}()
	<-done
	if !ft.failed {
		t.Fatal("2 masters accepted")
	}
}

// fatalT records Fatalf and ends the goroutine, so that a helper's failure
// path can be tested.
type fatalT struct {
	testing.TB
	failed bool
}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.failed = true
	runtime.Goexit()
}

func (f *fatalT) Helper() {}

func TestStartRedisSentinel(t *testing.T) {
	ctx := context.Background()
	rs := StartRedisSentinel(t)
	a, err := rs.MasterAddr(ctx)
	if err != nil || a != rs.Master.Addr {
		t.Fatalf("master = %q, %v; want %s", a, err, rs.Master.Addr)
	}
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: []string{rs.Sentinel.Addr}})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: make sure the replica has the key.
	if n, err := c.Do(ctx, "wait", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	if err := rs.KillMasterAndWaitFailover(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(10*time.Second, func() error { return c.Set(ctx, "k2", "v", 0).Err() }); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET after failover = %q, %v", v, err)
	}
}

func TestStartRedisTLS(t *testing.T) {
	ctx := context.Background()
	s, certPEM := StartRedisTLS(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("bad certificate PEM")
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
	plain := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("plain-text PING accepted by the TLS server")
	}
}

func TestStartRedisProcess(t *testing.T) {
	addr, stop, err := StartRedisProcess()
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	stop()
	if err := WaitTCP(addr, 50*time.Millisecond); err == nil {
		t.Fatal("server still accepts connections after stop")
	}
}
