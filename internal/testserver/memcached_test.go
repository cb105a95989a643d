package testserver

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestMemcachedStartStopRestart(t *testing.T) {
	m := NewMemcached(t, "-m", "8")
	st := m.Stats()
	if st["limit_maxbytes"] != "8388608" {
		t.Fatalf("limit_maxbytes = %q, want 8388608 (extra args must win)", st["limit_maxbytes"])
	}
	m.Stop()
	m.Stop() // idempotent
	if c, err := net.DialTimeout("tcp", m.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", m.Addr)
	}
	if _, err := MemcachedStats(m.Addr); err == nil {
		t.Fatal("MemcachedStats on a stopped server: no error")
	}
	m.Start()
	m.Start() // no-op on a running server
	if st := m.Stats(); st["curr_items"] != "0" {
		t.Fatalf("restarted server has curr_items %q, want 0", st["curr_items"])
	}
	pid := m.Stats()["pid"]
	m.Restart()
	if st := m.Stats(); st["pid"] == pid || st["curr_items"] != "0" {
		t.Fatalf("Restart kept the process %s (now %s), or its items: %v", pid, st["pid"], st["curr_items"])
	}
}

func TestStartMemcached(t *testing.T) {
	addr := StartMemcached(t)
	if err := WaitTCP(addr, time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := MemcachedStats(addr)
	if err != nil {
		t.Fatal(err)
	}
	if st["version"] == "" {
		t.Fatalf("stats without version: %v", st)
	}
}

func TestStartMemcachedProcess(t *testing.T) {
	addr, stop, err := StartMemcachedProcess()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MemcachedStats(addr); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := MemcachedStats(addr); err == nil {
		t.Fatal("server still answers after stop")
	}
	t.Setenv("PATH", t.TempDir())
	if _, _, err := StartMemcachedProcess(); err == nil || !strings.Contains(err.Error(), "Debian package memcached") {
		t.Fatalf("without a binary: %v", err)
	}
}
