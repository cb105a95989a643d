// Package testserver starts real servers (redis-server, memcached, a
// MongoDB-compatible server) on free loopback ports for tests, and stops them
// when the test ends. A missing server binary is a test failure, never a
// silent skip: `make test` installs what the tests need.
package testserver

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr returns "127.0.0.1:port".
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// LookPath returns the path of the named server binary, or fails the test
// with a message saying how to install it.
func LookPath(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("testserver: %s not found (install the Debian package %s, or run `make test`, which does): %v", name, debianPackage, err)
	}
	return p
}

// WaitTCP waits until addr accepts TCP connections or timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
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

// startProcess starts the server binary name (from the Debian package
// debianPackage) with args(port) on a free loopback port, without a
// testing.TB, for a TestMain. It returns the address and a function that
// stops the server; the server also dies with the test process.
func startProcess(name, debianPackage string, args func(port int) []string) (addr string, stop func(), err error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", nil, fmt.Errorf("testserver: %s not found (install the Debian package %s, or run `make test`, which does): %w", name, debianPackage, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("testserver: no free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, args(port)...)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("testserver: starting %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	addr = Addr(port)
	if err := waitUp(name, addr, done, 10*time.Second); err != nil {
		stop()
		return "", nil, err
	}
	return addr, stop, nil
}
