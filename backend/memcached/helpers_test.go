package memcached

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/internal/testserver"
)

// newClient returns a client of the servers at addrs sized for the tests'
// concurrency.
func newClient(addrs ...string) *memcache.Client {
	c := memcache.New(addrs...)
	c.Timeout = 2 * time.Second
	c.MaxIdleConns = 128
	return c
}

var prefixes atomic.Int64

// uniquePrefix returns a prefix no other Store of this test binary uses.
func uniquePrefix() string {
	return "t" + strconv.FormatInt(prefixes.Add(1), 10) + ":"
}

// newStore returns a Store on addrs with a unique prefix (unless opts sets
// one), closed when the test ends.
func newStore(t testing.TB, opts *Options, addrs ...string) *Store {
	t.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Prefix == "" {
		o.Prefix = uniquePrefix()
	}
	s, err := New(newClient(addrs...), &o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startPool starts n memcached servers and returns their handles and
// addresses.
func startPool(t testing.TB, n int) ([]*testserver.Memcached, []string) {
	t.Helper()
	var ms []*testserver.Memcached
	var addrs []string
	for i := 0; i < n; i++ {
		m := testserver.NewMemcached(t)
		ms = append(ms, m)
		addrs = append(addrs, m.Addr)
	}
	return ms, addrs
}

// meta sends one raw command line to addr and returns the first line of
// the answer (without CRLF).
func meta(t testing.TB, addr, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		t.Fatalf("write %s: %v", addr, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read %s: %v", addr, err)
	}
	return strings.TrimRight(line, "\r\n")
}

// serverTTL returns the TTL in seconds the server holds for the full key
// (-1: never expires) and whether the key exists, read with the meta
// command "mg <key> t" (Memcached >= 1.6).
func serverTTL(t testing.TB, addr, fullKey string) (int, bool) {
	t.Helper()
	line := meta(t, addr, "mg "+fullKey+" t")
	if line == "EN" {
		return 0, false
	}
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != "HD" || !strings.HasPrefix(f[1], "t") {
		t.Fatalf("mg %s t: unexpected answer %q", fullKey, line)
	}
	n, err := strconv.Atoi(f[1][1:])
	if err != nil {
		t.Fatalf("mg %s t: %q: %v", fullKey, line, err)
	}
	return n, true
}
