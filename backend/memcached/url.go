package memcached

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
)

// Defaults of the URL parameters.
const (
	// DefaultTimeout is the client's network timeout when the URL has no
	// timeout parameter. The engine bounds every call by its own deadline
	// (its store timeout plus the process's scheduling delay); this one
	// bounds a single network operation, so it must not be shorter than
	// that deadline under load: a process whose CPU is saturated reads a
	// reply that has arrived long after it arrived, and a 50ms socket
	// deadline turned healthy round trips into errors in the load test. It
	// also bounds the work a call abandoned at the engine's deadline keeps
	// doing (see the package doc), which Close waits for.
	DefaultTimeout = time.Second
	// DefaultMaxIdle is the idle connections kept per server when the URL
	// has no max_idle parameter.
	DefaultMaxIdle = 64
	// DefaultPort is used for a host given without a port.
	DefaultPort = "11211"
)

func init() {
	backend.Register("memcached", Open)
}

// Open opens a Store from a URL of the form
//
//	memcached://host1:11211,host2:11211?prefix=myapp:&timeout=1s&max_idle=64
//
// with one or more servers (the port defaults to 11211; keys are spread
// over the servers by gomemcache's hash, with no fail-over). Parameters:
// prefix (Options.Prefix), timeout (each network operation's deadline,
// default DefaultTimeout) and max_idle (idle connections kept per server,
// default DefaultMaxIdle). Unknown parameters, user info (Memcached has no
// passwords) and paths are ErrInvalidURL errors. Host names are resolved
// once, by Open (gomemcache's ServerList): a name that does not resolve is
// an ErrInvalidURL error, and a server whose address changes needs a new
// Store. Open does not contact the servers: an unreachable server shows as
// ErrUnavailable on use. Close closes the client's connections.
func Open(ctx context.Context, u *url.URL) (backend.Backend, error) {
	if u.User != nil {
		return nil, backend.Errorf(u, "memcached has no user or password: remove the user info")
	}
	if u.Path != "" && u.Path != "/" {
		return nil, backend.Errorf(u, "unexpected path %q", u.Path)
	}
	if u.Host == "" {
		return nil, backend.Errorf(u, "no server: want memcached://host:port[,host:port...]")
	}
	var servers []string
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return nil, backend.Errorf(u, "empty server in host list")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = strings.Trim(h, "[]"), DefaultPort
		}
		if host == "" || port == "" {
			return nil, backend.Errorf(u, "server %q: want host:port", h)
		}
		servers = append(servers, net.JoinHostPort(host, port))
	}
	p := backend.NewParams(u)
	opts := &Options{Servers: servers}
	opts.Prefix, _ = p.Get("prefix")
	timeout := DefaultTimeout
	if v, ok := p.Get("timeout"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, backend.Errorf(u, "timeout %q: want a positive duration such as 100ms", v)
		}
		timeout = d
	}
	maxIdle := DefaultMaxIdle
	if v, ok := p.Get("max_idle"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, backend.Errorf(u, "max_idle %q: want a positive integer", v)
		}
		maxIdle = n
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	ss := new(memcache.ServerList)
	if err := ss.SetServers(servers...); err != nil {
		return nil, backend.Errorf(u, "servers: %v", err)
	}
	c := memcache.NewFromSelector(ss)
	c.Timeout = timeout
	c.MaxIdleConns = maxIdle
	s, err := New(c, opts)
	if err != nil {
		return nil, backend.Errorf(u, "prefix: %v", err)
	}
	s.ownClient = true
	s.oneServer = len(servers) == 1
	return s, nil
}
