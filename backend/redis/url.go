package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
)

// The URL schemes this package registers with backend.Register (see Open
// for their forms).
const (
	// SchemeRedis is a standalone server: redis://[[user]:password@]host[:port][/db].
	SchemeRedis = "redis"
	// SchemeRediss is SchemeRedis over TLS.
	SchemeRediss = "rediss"
	// SchemeCluster is a Redis Cluster, given by seed nodes: redis+cluster://h1:p1,h2:p2.
	SchemeCluster = "redis+cluster"
	// SchemeClusterTLS is SchemeCluster over TLS.
	SchemeClusterTLS = "rediss+cluster"
	// SchemeSentinel is a master found through Sentinel: redis+sentinel://s1:p1,s2:p2/master[/db].
	SchemeSentinel = "redis+sentinel"
	// SchemeSentinelTLS is SchemeSentinel with TLS to the data nodes.
	SchemeSentinelTLS = "rediss+sentinel"
)

// Query parameters this package handles itself (the rest go to go-redis).
const (
	ownParamPrefix        = "prefix"
	sentinelUserParam     = "sentinel_username"
	sentinelPasswordParam = "sentinel_password"
	masterParam           = "master"
)

func init() {
	backend.Register(SchemeRedis, openURL)
	backend.Register(SchemeRediss, openURL)
	backend.Register(SchemeCluster, openURL)
	backend.Register(SchemeClusterTLS, openURL)
	backend.Register(SchemeSentinel, openURL)
	backend.Register(SchemeSentinelTLS, openURL)
}

func openURL(ctx context.Context, u *url.URL) (backend.Backend, error) {
	return Open(ctx, u.String())
}

// Open opens a Store on a client it creates from rawURL; the Store owns the
// client and Close closes it. The forms are:
//
//	redis://[[user]:password@]host[:port][/db][?params]
//	rediss://...                          (TLS)
//	redis+cluster://[[user]:password@]host:port,host:port,...[?params]
//	rediss+cluster://...                  (TLS)
//	redis+sentinel://[[user]:password@]host:port,...[/master[/db]][?params]
//	redis+sentinel://master[:password]@host:port,...[/db][?params]
//	rediss+sentinel://...                 (TLS to the data nodes)
//
// The user name and password are percent-decoded (so a password with
// "@", ":" or "/" works when encoded, as in DEFENDER_REDIS_URL). The
// sentinel master name is the first path segment, or the ?master= parameter,
// or, as a shorthand, the user name. Parameters: prefix (Options.Prefix);
// for sentinel, sentinel_username and sentinel_password (the sentinels' own
// credentials); and go-redis's own options (dial_timeout, read_timeout,
// write_timeout, pool_size, max_retries, client_name, ... with durations
// like 100ms, and for TLS skip_verify). Any other parameter is an error.
//
// Clients created here have ContextTimeoutEnabled (the context's deadline
// bounds every call), MaxRetries -1 unless max_retries is given, and one
// dial attempt per connection, so that a dead server fails fast and the
// engine's fail mode applies. Errors are backend.ErrInvalidURL errors that
// show the URL with its password redacted.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	cfg, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var client goredis.UniversalClient
	switch {
	case cfg.cluster != nil:
		client = goredis.NewClusterClient(cfg.cluster)
	case cfg.failover != nil:
		client = goredis.NewFailoverClient(cfg.failover)
	default:
		client = goredis.NewClient(cfg.single)
	}
	s := New(client, &Options{Prefix: cfg.prefix})
	s.owned = true
	return s, nil
}

// config is a parsed store URL: exactly one of the client options is set.
type config struct {
	single   *goredis.Options
	cluster  *goredis.ClusterOptions
	failover *goredis.FailoverOptions
	prefix   string
}

func parseURL(rawURL string) (*config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		msg := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			msg = ue.Err.Error()
		}
		return nil, fmt.Errorf("%w %q: %s", backend.ErrInvalidURL, backend.Redact(rawURL), scrub(msg, rawURL))
	}
	if u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(rawURL, "#") {
		// Whatever follows "#" may be a password with an unencoded "#";
		// show only the scheme.
		return nil, fmt.Errorf("%w %q: a fragment (#...) or opaque URL is not allowed (percent-encode # in a password as %%23)",
			backend.ErrInvalidURL, u.Scheme+"://(redacted)")
	}
	q := u.Query()
	cfg := &config{prefix: q.Get(ownParamPrefix)}
	q.Del(ownParamPrefix)
	_, retries := q["max_retries"]
	bad := func(err error) error {
		return invalid(u, "%s", scrub(err.Error(), rawURL))
	}
	scheme := strings.ToLower(u.Scheme)
	inner := &url.URL{Scheme: "redis", User: u.User, Host: u.Host, Path: u.Path}
	if strings.HasPrefix(scheme, "rediss") {
		inner.Scheme = "rediss"
	}
	switch scheme {
	case SchemeRedis, SchemeRediss:
		if strings.Contains(u.Host, ",") {
			return nil, invalid(u, "several hosts: use %s:// or %s://", SchemeCluster, SchemeSentinel)
		}
		inner.RawQuery = q.Encode()
		o, err := goredis.ParseURL(inner.String())
		if err != nil {
			return nil, bad(err)
		}
		o.ContextTimeoutEnabled = true
		if !retries {
			o.MaxRetries = -1
		}
		o.DialerRetries = 1
		cfg.single = o
	case SchemeCluster, SchemeClusterTLS:
		hosts, err := splitHosts(u)
		if err != nil {
			return nil, err
		}
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, invalid(u, "a cluster has only database 0, not %q", p)
		}
		inner.Host, inner.Path = hosts[0], ""
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		inner.RawQuery = q.Encode()
		o, err := goredis.ParseClusterURL(inner.String())
		if err != nil {
			return nil, bad(err)
		}
		o.ContextTimeoutEnabled = true
		o.DialerRetries = 1
		// go-redis 9.22 moved the default from 10s to 60s: a failover
		// would go unseen for a minute.
		o.ClusterStateReloadInterval = 10 * time.Second
		cfg.cluster = o
	case SchemeSentinel, SchemeSentinelTLS:
		hosts, err := splitHosts(u)
		if err != nil {
			return nil, err
		}
		master, db, user, pass, err := sentinelTarget(u, q)
		if err != nil {
			return nil, err
		}
		su, sp := q.Get(sentinelUserParam), q.Get(sentinelPasswordParam)
		q.Del(sentinelUserParam)
		q.Del(sentinelPasswordParam)
		q.Del(masterParam)
		inner.User, inner.Host, inner.Path = nil, hosts[0], ""
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		inner.RawQuery = q.Encode()
		o, err := goredis.ParseFailoverURL(inner.String())
		if err != nil {
			return nil, bad(err)
		}
		o.MasterName, o.DB, o.Username, o.Password = master, db, user, pass
		o.SentinelUsername, o.SentinelPassword = su, sp
		o.ContextTimeoutEnabled = true
		if !retries {
			o.MaxRetries = -1
		}
		o.DialerRetries = 1
		cfg.failover = o
	default:
		return nil, invalid(u, "scheme %q is not a redis scheme", u.Scheme)
	}
	return cfg, nil
}

// invalid returns an ErrInvalidURL error about u (redacted) with the reason
// given by format and args. A URL with an "@" outside its user part (where
// Redacted would not hide a password) is shown as its scheme only.
func invalid(u *url.URL, format string, args ...any) error {
	ats := strings.Count(u.Redacted(), "@")
	if u.User == nil && ats > 0 || u.User != nil && ats > 1 {
		return fmt.Errorf("%w %q: %s", backend.ErrInvalidURL, u.Scheme+"://(redacted)", fmt.Sprintf(format, args...))
	}
	return backend.Errorf(u, format, args...)
}

// splitHosts returns the comma-separated host:port list of u.
func splitHosts(u *url.URL) ([]string, error) {
	var hosts []string
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return nil, invalid(u, "empty host in host list")
		}
		if !strings.Contains(h, ":") {
			h += ":6379"
			if strings.HasSuffix(u.Scheme, "sentinel") {
				h = h[:len(h)-5] + ":26379"
			}
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// sentinelTarget finds the master name, database and data-node credentials
// of a sentinel URL.
func sentinelTarget(u *url.URL, q url.Values) (master string, db int, user, pass string, err error) {
	segs := strings.FieldsFunc(u.Path, func(r rune) bool { return r == '/' })
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	dbSeg := ""
	switch {
	case len(segs) >= 1 && !isNumber(segs[0]):
		master = segs[0]
		if len(segs) == 2 {
			dbSeg = segs[1]
		} else if len(segs) > 2 {
			return "", 0, "", "", invalid(u, "path %q is not /master[/db]", u.Path)
		}
	case len(segs) == 1:
		dbSeg = segs[0]
	case len(segs) > 1:
		return "", 0, "", "", invalid(u, "path %q is not /master[/db]", u.Path)
	}
	if m := q.Get(masterParam); m != "" {
		if master != "" && master != m {
			return "", 0, "", "", invalid(u, "two master names: %q and %q", master, m)
		}
		master = m
	}
	if master == "" && user != "" {
		// The shorthand redis+sentinel://master[:password]@hosts.
		master, user = user, ""
	}
	if master == "" {
		return "", 0, "", "", invalid(u, "no master name (use /master, ?master= or master@hosts)")
	}
	if dbSeg != "" {
		if db, err = strconv.Atoi(dbSeg); err != nil || db < 0 {
			return "", 0, "", "", invalid(u, "invalid database number %q", dbSeg)
		}
	}
	return master, db, user, pass, nil
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// scrub removes the password of rawURL from msg.
func scrub(msg, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
			msg = strings.ReplaceAll(msg, url.QueryEscape(p), "xxxxx")
		}
	}
	if i := strings.Index(msg, rawURL); i >= 0 {
		msg = strings.ReplaceAll(msg, rawURL, backend.Redact(rawURL))
	}
	return msg
}
