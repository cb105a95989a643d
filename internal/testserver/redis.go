package testserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is one redis-server process (standalone, replica, cluster node
// or sentinel) started by this package on a loopback port. It is stopped by
// the test's cleanup; Stop and Kill end it earlier.
type RedisServer struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the TCP port.
	Port int
	// Dir is the server's private working directory.
	Dir string

	t       testing.TB
	bin     string
	args    []string
	cmd     *exec.Cmd
	logPath string
	mu      sync.Mutex
	done    chan struct{}
	stopped bool
}

// redisWait is how long a server may take to accept connections.
const redisWait = 15 * time.Second

// StartRedis starts a standalone redis-server without persistence on a free
// loopback port and returns its address. The server is stopped when the test
// ends.
func StartRedis(t testing.TB) string {
	t.Helper()
	return StartRedisServer(t).Addr
}

// StartRedisServer starts a redis-server on a free loopback port with no
// persistence, in a private temporary directory, with the extra
// configuration args (for example "--replicaof", "127.0.0.1 6379"). The
// server is stopped when the test ends.
func StartRedisServer(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	bin := LookPath(t, "redis-server", "redis-server")
	dir := t.TempDir()
	port := FreePort(t)
	base := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
	return startRedisProcess(t, bin, port, dir, append(base, args...))
}

func startRedisProcess(t testing.TB, bin string, port int, dir string, args []string) *RedisServer {
	t.Helper()
	s := &RedisServer{
		Addr:    Addr(port),
		Port:    port,
		Dir:     dir,
		t:       t,
		bin:     bin,
		args:    args,
		logPath: filepath.Join(dir, "redis.log"),
	}
	s.spawn()
	t.Cleanup(s.Kill)
	if err := WaitTCP(s.Addr, redisWait); err != nil {
		s.Kill()
		t.Fatalf("%v\n%s", err, s.Log())
	}
	return s
}

// spawn starts the server process (s.mu held or s not shared yet).
func (s *RedisServer) spawn() {
	s.t.Helper()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	// A process group of its own, so that a fork (replication snapshot) is
	// ended with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testserver: start %s: %v", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.stopped = cmd, done, false
}

// Restart starts the server again after Stop or Kill: the same port,
// directory and configuration (so, without persistence, an empty server, as
// after a crash), and waits until it accepts connections. It is still
// stopped when the test ends.
func (s *RedisServer) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.t.Fatalf("testserver: Restart of %s, which is running", s.Addr)
	}
	s.spawn()
	if err := WaitTCP(s.Addr, redisWait); err != nil {
		s.t.Fatalf("testserver: restart: %v\n%s", err, s.Log())
	}
}

// Log returns the tail of the server's log file, for failure messages.
func (s *RedisServer) Log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Client returns a go-redis client connected to the server, closed when the
// test ends.
func (s *RedisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop ends the server with SIGTERM (a clean shutdown) and waits for it.
func (s *RedisServer) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL (a crash) and waits for it. Kill is
// idempotent.
func (s *RedisServer) Kill() { s.signal(syscall.SIGKILL) }

func (s *RedisServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	_ = syscall.Kill(-s.cmd.Process.Pid, sig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	// Any child left in the group goes too.
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
}

// Info returns the fields of INFO section as a map ("role" -> "master").
func (s *RedisServer) Info(ctx context.Context, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	txt, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(txt), nil
}

func parseInfo(txt string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(txt))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m
}

// waitFor polls cond every 20ms until it returns nil or timeout passes, and
// returns the last error.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RedisCluster is a Redis Cluster of redis-server nodes on loopback.
type RedisCluster struct {
	// Nodes are all nodes, masters first as created.
	Nodes []*RedisServer
	t     testing.TB
}

// StartRedisCluster starts a Redis Cluster with the given number of masters
// (at least 3) and replicasPerMaster replicas each, created with
// `redis-cli --cluster create`, and waits until every node reports
// cluster_state:ok and agrees on the slot map. The nodes are stopped when
// the test ends. It returns the cluster; Addrs lists the seed addresses.
func StartRedisCluster(t testing.TB, masters, replicasPerMaster int) *RedisCluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("testserver: a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	cli := LookPath(t, "redis-cli", "redis-tools")
	n := masters * (1 + replicasPerMaster)
	rc := &RedisCluster{t: t}
	for i := 0; i < n; i++ {
		rc.Nodes = append(rc.Nodes, StartRedisServer(t,
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(FreePort(t)),
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000",
			"--cluster-replica-validity-factor", "0",
			"--cluster-require-full-coverage", "yes",
		))
	}
	args := []string{"--cluster", "create"}
	args = append(args, rc.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	// redis-cli --cluster create has no timeout of its own and was seen to
	// hang on a heavily loaded machine: bound it, and on failure reset the
	// nodes and try once more.
	var out []byte
	var err error
	for try := 0; try < 2; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err = exec.CommandContext(ctx, cli, args...).CombinedOutput()
		cancel()
		if err == nil {
			break
		}
		for _, a := range rc.Addrs() {
			host, port, _ := net.SplitHostPort(a)
			for _, cmd := range [][]string{{"FLUSHALL"}, {"CLUSTER", "RESET", "HARD"}} {
				rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = exec.CommandContext(rctx, cli, append([]string{"-h", host, "-p", port}, cmd...)...).Run()
				rcancel()
			}
		}
	}
	if err != nil {
		t.Fatalf("testserver: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := rc.WaitOK(30 * time.Second); err != nil {
		t.Fatalf("testserver: cluster not ready: %v\n%s", err, out)
	}
	return rc
}

// Addrs returns the addresses of all nodes.
func (rc *RedisCluster) Addrs() []string {
	out := make([]string, len(rc.Nodes))
	for i, s := range rc.Nodes {
		out[i] = s.Addr
	}
	return out
}

// alive returns the nodes not stopped.
func (rc *RedisCluster) alive() []*RedisServer {
	var out []*RedisServer
	for _, s := range rc.Nodes {
		s.mu.Lock()
		if !s.stopped {
			out = append(out, s)
		}
		s.mu.Unlock()
	}
	return out
}

// WaitOK waits until every live node reports cluster_state:ok, all 16384
// slots are assigned to reachable masters, and every live node knows all
// live replicas (so that a failover can happen).
func (rc *RedisCluster) WaitOK(timeout time.Duration) error {
	ctx := context.Background()
	return waitFor(timeout, func() error {
		alive := rc.alive()
		for _, s := range alive {
			m, err := s.ClusterInfo(ctx)
			if err != nil {
				return err
			}
			if m["cluster_state"] != "ok" {
				return fmt.Errorf("%s: cluster_state %s", s.Addr, m["cluster_state"])
			}
			if m["cluster_slots_ok"] != "16384" {
				return fmt.Errorf("%s: cluster_slots_ok %s", s.Addr, m["cluster_slots_ok"])
			}
			if m["cluster_known_nodes"] != strconv.Itoa(len(rc.Nodes)) {
				return fmt.Errorf("%s: cluster_known_nodes %s", s.Addr, m["cluster_known_nodes"])
			}
		}
		// Replicas are in sync with their masters.
		for _, s := range alive {
			info, err := s.Info(ctx, "replication")
			if err != nil {
				return err
			}
			if info["role"] == "slave" && info["master_link_status"] != "up" {
				return fmt.Errorf("%s: replica link %s", s.Addr, info["master_link_status"])
			}
		}
		return nil
	})
}

// ClusterInfo returns the fields of CLUSTER INFO on s.
func (s *RedisServer) ClusterInfo(ctx context.Context) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	txt, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(txt), nil
}

// Role returns the node's role from INFO replication: "master" or "slave".
func (s *RedisServer) Role(ctx context.Context) (string, error) {
	m, err := s.Info(ctx, "replication")
	if err != nil {
		return "", err
	}
	return m["role"], nil
}

// MasterOf returns the master node that owns key's slot, per the node that
// answers CLUSTER SLOTS first.
func (rc *RedisCluster) MasterOf(ctx context.Context, key string) (*RedisServer, error) {
	for _, s := range rc.alive() {
		c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		slot, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			c.Close()
			continue
		}
		slots, err := c.ClusterSlots(ctx).Result()
		c.Close()
		if err != nil {
			continue
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				return rc.node(r.Nodes[0].Addr)
			}
		}
	}
	return nil, fmt.Errorf("testserver: no node knows the master of %q", key)
}

// ReplicaOf returns a live replica of master.
func (rc *RedisCluster) ReplicaOf(ctx context.Context, master *RedisServer) (*RedisServer, error) {
	for _, s := range rc.alive() {
		info, err := s.Info(ctx, "replication")
		if err != nil {
			continue
		}
		if info["role"] == "slave" && info["master_port"] == strconv.Itoa(master.Port) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("testserver: %s has no live replica", master.Addr)
}

func (rc *RedisCluster) node(addr string) (*RedisServer, error) {
	for _, s := range rc.Nodes {
		if s.Addr == addr {
			return s, nil
		}
	}
	return nil, fmt.Errorf("testserver: %s is not a node of this cluster", addr)
}

// Failover runs CLUSTER FAILOVER on replica (a coordinated manual failover
// that loses no acknowledged write) and waits until it is a master and the
// cluster is ok again.
func (rc *RedisCluster) Failover(ctx context.Context, replica *RedisServer, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: replica.Addr, MaxRetries: -1})
	defer c.Close()
	if err := c.ClusterFailover(ctx).Err(); err != nil {
		return fmt.Errorf("testserver: CLUSTER FAILOVER on %s: %w", replica.Addr, err)
	}
	if err := waitFor(timeout, func() error {
		role, err := replica.Role(ctx)
		if err != nil {
			return err
		}
		if role != "master" {
			return fmt.Errorf("%s is still %s", replica.Addr, role)
		}
		return nil
	}); err != nil {
		return err
	}
	return rc.waitConverged(replica, timeout)
}

// waitConverged waits until every live node reports cluster_state:ok and
// sees promoted as a master and only live nodes as masters in CLUSTER SLOTS.
func (rc *RedisCluster) waitConverged(promoted *RedisServer, timeout time.Duration) error {
	ctx := context.Background()
	return waitFor(timeout, func() error {
		alive := rc.alive()
		live := map[string]bool{}
		for _, s := range alive {
			live[s.Addr] = true
		}
		for _, s := range alive {
			m, err := s.ClusterInfo(ctx)
			if err != nil {
				return err
			}
			if m["cluster_state"] != "ok" {
				return fmt.Errorf("%s: cluster_state %s", s.Addr, m["cluster_state"])
			}
			c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
			slots, err := c.ClusterSlots(ctx).Result()
			c.Close()
			if err != nil {
				return err
			}
			seen := false
			for _, r := range slots {
				if len(r.Nodes) == 0 || !live[r.Nodes[0].Addr] {
					return fmt.Errorf("%s: slots %d-%d served by a dead node", s.Addr, r.Start, r.End)
				}
				seen = seen || r.Nodes[0].Addr == promoted.Addr
			}
			if !seen {
				return fmt.Errorf("%s: does not see %s as a master yet", s.Addr, promoted.Addr)
			}
		}
		return nil
	})
}

// KillAndWaitPromotion kills master (a crash) and waits until replica has
// been promoted by the cluster and every live node reports cluster_state:ok.
func (rc *RedisCluster) KillAndWaitPromotion(ctx context.Context, master, replica *RedisServer, timeout time.Duration) error {
	master.Kill()
	if err := waitFor(timeout, func() error {
		role, err := replica.Role(ctx)
		if err != nil {
			return err
		}
		if role != "master" {
			return fmt.Errorf("%s is still %s", replica.Addr, role)
		}
		return nil
	}); err != nil {
		return err
	}
	return rc.waitConverged(replica, timeout)
}

// RedisSentinel is a master, a replica and one sentinel monitoring them under
// the master name SentinelMaster.
type RedisSentinel struct {
	Master   *RedisServer
	Replica  *RedisServer
	Sentinel *RedisServer
}

// SentinelMaster is the master name the sentinel started by
// StartRedisSentinel monitors.
const SentinelMaster = "defender"

// StartRedisSentinel starts a master, a replica of it, and one sentinel
// (redis-server --sentinel, quorum 1, down-after 1s) monitoring them as
// SentinelMaster, and waits until the sentinel knows the replica. Everything
// is stopped when the test ends.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	ctx := context.Background()
	master := StartRedisServer(t)
	replica := StartRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	if err := waitFor(redisWait, func() error {
		info, err := replica.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if info["master_link_status"] != "up" {
			return fmt.Errorf("replica link %s", info["master_link_status"])
		}
		return nil
	}); err != nil {
		t.Fatalf("testserver: replica not in sync: %v\n%s", err, replica.Log())
	}
	bin := LookPath(t, "redis-server", "redis-server")
	dir := t.TempDir()
	port := FreePort(t)
	conf := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
daemonize no
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, port, dir, filepath.Join(dir, "redis.log"), SentinelMaster, master.Port,
		SentinelMaster, SentinelMaster, SentinelMaster)
	confPath := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	sent := startRedisProcess(t, bin, port, dir, []string{confPath, "--sentinel"})
	rs := &RedisSentinel{Master: master, Replica: replica, Sentinel: sent}
	if err := waitFor(redisWait, func() error {
		n, err := rs.knownReplicas(ctx)
		if err != nil {
			return err
		}
		if n < 1 {
			return fmt.Errorf("sentinel knows no replica yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("testserver: sentinel not ready: %v\n%s", err, sent.Log())
	}
	return rs
}

func (rs *RedisSentinel) knownReplicas(ctx context.Context) (int, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: rs.Sentinel.Addr, MaxRetries: -1})
	defer sc.Close()
	reps, err := sc.Replicas(ctx, SentinelMaster).Result()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range reps {
		if !strings.Contains(r["flags"], "down") && r["master-link-status"] == "ok" {
			n++
		}
	}
	return n, nil
}

// MasterAddr asks the sentinel for the current master's address.
func (rs *RedisSentinel) MasterAddr(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: rs.Sentinel.Addr, MaxRetries: -1})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		return "", err
	}
	return Addr(mustAtoi(a[1])), nil
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// KillMasterAndWaitFailover kills the master (a crash) and waits until the
// sentinel names the replica as master and the replica reports role master.
func (rs *RedisSentinel) KillMasterAndWaitFailover(ctx context.Context, timeout time.Duration) error {
	rs.Master.Kill()
	return waitFor(timeout, func() error {
		a, err := rs.MasterAddr(ctx)
		if err != nil {
			return err
		}
		if a != rs.Replica.Addr {
			return fmt.Errorf("sentinel still names %s as master", a)
		}
		role, err := rs.Replica.Role(ctx)
		if err != nil {
			return err
		}
		if role != "master" {
			return fmt.Errorf("%s is still %s", rs.Replica.Addr, role)
		}
		return nil
	})
}

// StartRedisProcess starts a standalone redis-server without persistence on
// a free loopback port without a testing.TB, for a TestMain that serves
// runnable examples. It returns the address and a function that stops the
// server; the server also dies with the test process. A missing binary is an
// error naming the package.
func StartRedisProcess() (addr string, stop func(), err error) {
	return startProcess("redis-server", "redis-server", func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--logfile", ""}
	})
}
