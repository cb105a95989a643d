package testserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// MongoURIEnv names a MongoDB server to use instead of FerretDB, for
// example "mongodb://127.0.0.1:27017". Each test gets its own database on it.
const MongoURIEnv = "DEFENDER_TEST_MONGO_URI"

// Mongo is a MongoDB wire-protocol server for one test: FerretDB (built from
// internal/testserver/ferretdb, SQLite storage in a temporary directory),
// or the server named by DEFENDER_TEST_MONGO_URI behind a TCP proxy.
type Mongo struct {
	// URI names a database of its own for the test.
	URI string
	// Addr is host:port of the server (or of the proxy).
	Addr string

	t       testing.TB
	bin     string
	dir     string
	proc    *exec.Cmd
	exited  chan struct{}
	stderr  *bytes.Buffer
	proxy   *Proxy
	running bool
}

var dbSeq atomic.Int64

// dbName returns a database name unique to this test and call.
func dbName(t testing.TB) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", t.Name(), os.Getpid(), dbSeq.Add(1)))
	return "test_" + hex.EncodeToString(sum[:8])
}

// StartMongo returns the URI of a running MongoDB-compatible server with a
// database of the test's own; the server stops when the test ends.
func StartMongo(t testing.TB) string { return StartMongoServer(t).URI }

// StartMongoServer starts a MongoDB-compatible server for the test (see
// Mongo) and stops it when the test ends. Its Stop and Start methods make
// it unavailable and available again on the same address, with the same
// data.
func StartMongoServer(t testing.TB) *Mongo {
	t.Helper()
	db := dbName(t)
	if ext := os.Getenv(MongoURIEnv); ext != "" {
		u, err := url.Parse(ext)
		if err != nil || u.Host == "" || u.Scheme != "mongodb" {
			t.Fatalf("testserver: %s must be a mongodb://host:port URI", MongoURIEnv)
		}
		p := StartProxy(t, u.Host)
		u.Host = p.Addr
		u.Path = "/" + db
		q := u.Query()
		q.Set("directConnection", "true")
		u.RawQuery = q.Encode()
		return &Mongo{URI: u.String(), Addr: p.Addr, t: t, proxy: p, running: true}
	}
	m := &Mongo{t: t, bin: ferretDBBinary(t), dir: t.TempDir()}
	m.Addr = Addr(FreePort(t))
	m.URI = "mongodb://" + m.Addr + "/" + db
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// Start starts the server again after Stop (same address, same data). It
// fails the test if the server does not accept connections within 60 s.
func (m *Mongo) Start() {
	m.t.Helper()
	if m.running {
		return
	}
	if m.proxy != nil {
		m.proxy.Start()
		m.running = true
		return
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		m.stderr = &bytes.Buffer{}
		cmd := exec.Command(m.bin, "-listen", m.Addr, "-dir", m.dir)
		cmd.Stderr = m.stderr
		cmd.Stdout = m.stderr
		if err := cmd.Start(); err != nil {
			m.t.Fatalf("testserver: starting ferretdb: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		m.proc, m.exited = cmd, exited
		ready := make(chan error, 1)
		go func() { ready <- WaitTCP(m.Addr, 60*time.Second) }()
		select {
		case err := <-ready:
			if err == nil {
				m.running = true
				return
			}
			lastErr = err
			m.kill()
		case <-exited:
			// Most likely the port was taken in the meantime (the
			// address must stay the same across restarts): retry.
			lastErr = fmt.Errorf("exited: %s", m.stderr.String())
			time.Sleep(100 * time.Millisecond)
		}
	}
	m.t.Fatalf("testserver: ferretdb on %s did not start: %v", m.Addr, lastErr)
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits for
// it to exit. Clients see connection refused until Start.
func (m *Mongo) Stop() {
	if !m.running {
		return
	}
	m.running = false
	if m.proxy != nil {
		m.proxy.Stop()
		return
	}
	_ = m.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.kill()
	}
}

func (m *Mongo) kill() {
	_ = m.proc.Process.Kill()
	<-m.exited
}

var (
	ferretOnce sync.Once
	ferretBin  string
	ferretErr  error
)

// ferretDBBinary builds internal/testserver/ferretdb once per test binary,
// into a cache directory keyed by the program's sources, so that later test
// binaries (and runs) reuse it. A file lock serialises concurrent builds.
func ferretDBBinary(t testing.TB) string {
	t.Helper()
	ferretOnce.Do(func() { ferretBin, ferretErr = buildFerretDB() })
	if ferretErr != nil {
		t.Fatalf("testserver: building the FerretDB test server: %v", ferretErr)
	}
	return ferretBin
}

func buildFerretDB() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the testserver sources")
	}
	src := filepath.Join(filepath.Dir(self), "ferretdb")
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	h.Write([]byte(runtime.Version()))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "defender-testserver")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ferretdb-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by another test binary while we waited
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	tmp := bin + ".tmp"
	cmd := exec.Command(goBin, "build", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %v\n%s", src, err, out)
	}
	return bin, os.Rename(tmp, bin)
}
