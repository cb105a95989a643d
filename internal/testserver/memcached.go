package testserver

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Memcached is a memcached server started for a test on a fixed loopback
// port. It can be stopped and started again on the same port (to simulate an
// outage); the test's cleanup stops it for good.
type Memcached struct {
	// Addr is "127.0.0.1:port", stable across Stop and Start.
	Addr string

	t    testing.TB
	bin  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartMemcached starts memcached on a free loopback port (64 MB, no UDP)
// and returns its address. The server is stopped when the test ends.
func StartMemcached(t testing.TB) string {
	t.Helper()
	return NewMemcached(t).Addr
}

// NewMemcached starts memcached on a free loopback port with extraArgs
// appended to the defaults (-l 127.0.0.1 -p PORT -U 0 -m 64; a later -m
// wins) and returns a handle to stop and restart it. The server is stopped
// when the test ends. A missing memcached binary fails the test.
func NewMemcached(t testing.TB, extraArgs ...string) *Memcached {
	t.Helper()
	bin := LookPath(t, "memcached", "memcached")
	port := FreePort(t)
	args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64"}
	if os.Geteuid() == 0 {
		// memcached refuses to run as root without naming a user.
		args = append(args, "-u", "root")
	}
	m := &Memcached{Addr: Addr(port), t: t, bin: bin, args: append(args, extraArgs...)}
	t.Cleanup(m.Stop)
	m.Start()
	return m
}

// Start starts the server again after Stop, on the same port. It fails the
// test if the server does not accept connections within 10 seconds. Start on
// a running server does nothing.
func (m *Memcached) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		cmd := exec.Command(m.bin, m.args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			m.t.Fatalf("testserver: starting memcached: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		if err := waitUp("memcached", m.Addr, done, 10*time.Second); err != nil {
			_ = cmd.Process.Kill()
			<-done
			// The port may still be held by the previous process's
			// socket for a moment: try again.
			lastErr = fmt.Errorf("%v (stderr: %s)", err, stderr.String())
			time.Sleep(100 * time.Millisecond)
			continue
		}
		m.cmd, m.done = cmd, done
		return
	}
	m.t.Fatalf("testserver: memcached on %s: %v", m.Addr, lastErr)
}

// waitUp waits until addr accepts connections, the process exits (done is
// closed) or timeout passes.
func waitUp(name, addr string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("testserver: %s exited before accepting connections on %s", name, addr)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testserver: %s not accepting connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server and waits for it to exit; connections to Addr are
// refused until Start. Stop on a stopped server does nothing.
func (m *Memcached) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.done
	m.cmd, m.done = nil, nil
}

// Restart stops the server and starts a new process on the same port, as
// an operator's restart would: the connections clients held to the old
// process are dead, and the new one holds no data. It fails the test like
// Start.
func (m *Memcached) Restart() {
	m.t.Helper()
	m.Stop()
	m.Start()
}

// Stats returns the server's general statistics (the "stats" command) as a
// map from name to value. It fails the test on a network error.
func (m *Memcached) Stats() map[string]string {
	m.t.Helper()
	st, err := MemcachedStats(m.Addr)
	if err != nil {
		m.t.Fatalf("testserver: %v", err)
	}
	return st
}

// MemcachedStats sends "stats" to the memcached server at addr and returns
// its answer as a map from name to value.
func MemcachedStats(addr string) (map[string]string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("memcached stats %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		return nil, fmt.Errorf("memcached stats %s: %w", addr, err)
	}
	out := map[string]string{}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("memcached stats %s: %w", addr, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "END" {
			return out, nil
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "STAT" {
			return nil, fmt.Errorf("memcached stats %s: unexpected line %q", addr, line)
		}
		out[f[1]] = f[2]
	}
}

// StartMemcachedProcess starts memcached on a free loopback port without a
// testing.TB, for a TestMain that serves runnable examples. It returns the
// address and a function that stops the server; the server also dies with
// the test process. A missing binary is an error naming the package.
func StartMemcachedProcess() (addr string, stop func(), err error) {
	return startProcess("memcached", "memcached", func(port int) []string {
		args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root")
		}
		return args
	})
}
