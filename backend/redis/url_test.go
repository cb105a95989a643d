package redis

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

func TestParseURL(t *testing.T) {
	type want struct {
		kind     string // single, cluster, failover
		addrs    []string
		db       int
		user     string
		pass     string
		tls      bool
		prefix   string
		master   string
		retries  int
		sentUser string
		sentPass string
		dial     time.Duration
	}
	for _, tc := range []struct {
		url  string
		want want
	}{
		{"redis://127.0.0.1:6380/2?prefix=app:&dial_timeout=250ms",
			want{kind: "single", addrs: []string{"127.0.0.1:6380"}, db: 2, prefix: "app:", retries: -1, dial: 250 * time.Millisecond}},
		{"redis://localhost", want{kind: "single", addrs: []string{"localhost:6379"}, retries: -1}},
		{"REDIS://:p%40ss@h:1/0", want{kind: "single", addrs: []string{"h:1"}, pass: "p@ss", retries: -1}},
		{"redis://alice:p%40s%3As%2Fw%25rd%23@h:1", want{kind: "single", addrs: []string{"h:1"}, user: "alice", pass: "p@s:s/w%rd#", retries: -1}},
		{"rediss://h:1?max_retries=2", want{kind: "single", addrs: []string{"h:1"}, tls: true, retries: 2}},
		{"redis+cluster://a:1,b:2,c:3?prefix=x", want{kind: "cluster", addrs: []string{"a:1", "b:2", "c:3"}, prefix: "x", retries: -1}},
		{"rediss+cluster://u:pw@a:1,b:2/0", want{kind: "cluster", addrs: []string{"a:1", "b:2"}, user: "u", pass: "pw", tls: true, retries: -1}},
		{"redis+cluster://a", want{kind: "cluster", addrs: []string{"a:6379"}, retries: -1}},
		{"redis+sentinel://s1:26379,s2:26380/mymaster/3?sentinel_password=sp&sentinel_username=su",
			want{kind: "failover", addrs: []string{"s1:26379", "s2:26380"}, master: "mymaster", db: 3, sentUser: "su", sentPass: "sp", retries: -1}},
		{"redis+sentinel://mymaster@s1:1/2", want{kind: "failover", addrs: []string{"s1:1"}, master: "mymaster", db: 2, retries: -1}},
		{"redis+sentinel://mymaster:pw@s1:1", want{kind: "failover", addrs: []string{"s1:1"}, master: "mymaster", pass: "pw", retries: -1}},
		{"redis+sentinel://u:pw@s1:1/4?master=m", want{kind: "failover", addrs: []string{"s1:1"}, master: "m", db: 4, user: "u", pass: "pw", retries: -1}},
		{"rediss+sentinel://s1/m?max_retries=1", want{kind: "failover", addrs: []string{"s1:26379"}, master: "m", tls: true, retries: 1}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			cfg, err := parseURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			var got want
			got.prefix = cfg.prefix
			switch {
			case cfg.single != nil:
				o := cfg.single
				got.kind, got.addrs, got.db, got.user, got.pass, got.tls, got.retries, got.dial = "single", []string{o.Addr}, o.DB, o.Username, o.Password, o.TLSConfig != nil, o.MaxRetries, o.DialTimeout
				if !o.ContextTimeoutEnabled || o.DialerRetries != 1 {
					t.Errorf("ContextTimeoutEnabled %v DialerRetries %d", o.ContextTimeoutEnabled, o.DialerRetries)
				}
			case cfg.cluster != nil:
				o := cfg.cluster
				got.kind, got.addrs, got.user, got.pass, got.tls, got.retries, got.dial = "cluster", o.Addrs, o.Username, o.Password, o.TLSConfig != nil, -1, o.DialTimeout
				if !o.ContextTimeoutEnabled || o.DialerRetries != 1 {
					t.Errorf("ContextTimeoutEnabled %v DialerRetries %d", o.ContextTimeoutEnabled, o.DialerRetries)
				}
			case cfg.failover != nil:
				o := cfg.failover
				got.kind, got.addrs, got.db, got.user, got.pass, got.tls, got.retries, got.dial = "failover", o.SentinelAddrs, o.DB, o.Username, o.Password, o.TLSConfig != nil, o.MaxRetries, o.DialTimeout
				got.master, got.sentUser, got.sentPass = o.MasterName, o.SentinelUsername, o.SentinelPassword
				if !o.ContextTimeoutEnabled || o.DialerRetries != 1 {
					t.Errorf("ContextTimeoutEnabled %v DialerRetries %d", o.ContextTimeoutEnabled, o.DialerRetries)
				}
			}
			if !equalWant(got.addrs, tc.want.addrs) {
				t.Errorf("addrs %q, want %q", got.addrs, tc.want.addrs)
			}
			got.addrs, tc.want.addrs = nil, nil
			if got.kind != tc.want.kind || got.db != tc.want.db || got.user != tc.want.user || got.pass != tc.want.pass ||
				got.tls != tc.want.tls || got.prefix != tc.want.prefix || got.master != tc.want.master || got.retries != tc.want.retries ||
				got.sentUser != tc.want.sentUser || got.sentPass != tc.want.sentPass || (tc.want.dial != 0 && got.dial != tc.want.dial) {
				t.Errorf("parsed %+v\n want %+v", got, tc.want)
			}
		})
	}
}

func equalWant(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestParseURLErrors(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{"redis://h:1?bogus=1", "bogus"},
		{"redis://user:s3cret@h:1?bogus=1", "bogus"},
		{"redis://:s3cret@h:1/x", "database"},
		{"redis://a:1,b:2", "several hosts"},
		{"redis+cluster://a:1,,b:2", "empty host"},
		{"redis+cluster://:s3cret@a:1/1", "only database 0"},
		{"redis+cluster://a:1?bogus=2", "bogus"},
		{"redis+sentinel://s:1", "no master name"},
		{"redis+sentinel://s:1/m/1/x", "path"},
		{"redis+sentinel://s:1/1/2", "path"},
		{"redis+sentinel://s:1/m?master=n", "two master names"},
		{"redis+sentinel://s:1/m/x", "database"},
		{"redis+sentinel://s:1/m/-1", "database"},
		{"redis+sentinel://s:1,,t:2/m", "empty host"},
		{"redis+sentinel://s:1,/m", "port"},
		{"redis+sentinel://u:s3cret@s:1/m?bogus=1", "bogus"},
		{"memcache://h:1", "not a redis scheme"},
		{"redis://u:s3cret@h:1/%zz", "escape"},
		{"redis://u:s3cret%zz@h:1/", "escape"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := parseURL(tc.url)
			if !errors.Is(err, backend.ErrInvalidURL) {
				t.Fatalf("%v, want ErrInvalidURL", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("password in error: %v", err)
			}
		})
	}
}

func TestScrub(t *testing.T) {
	raw := "redis://u:p%2Fw@h"
	if got := scrub("bad p/w and p%2Fw in "+raw, raw); strings.Contains(got, "p/w") || strings.Contains(got, "p%2Fw") {
		t.Errorf("scrub left the password: %q", got)
	}
	if got := scrub("x", "::"); got != "x" {
		t.Errorf("scrub of an unparsable URL changed the message: %q", got)
	}
}

// TestOpenRegistered opens real servers through backend.Open: an ACL user
// with a password full of URL-special characters, a database number, TLS,
// and the cluster form.
func TestOpenRegistered(t *testing.T) {
	ctx := tctx(t)
	srv, admin := standalone(t)
	const pass = "p@s:s/w%rd#?&+ é"
	if err := admin.Do(ctx, "acl", "setuser", "alice", "on", ">"+pass, "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "redis", User: url.UserPassword("alice", pass), Host: srv.Addr, Path: "/3", RawQuery: "prefix=app:"}
	b, err := backend.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Incr(ctx, []string{"k"}, 4, 0); err != nil {
		t.Fatalf("Incr as alice: %v", err)
	}
	db3 := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DB: 3})
	defer db3.Close()
	if v := db3.Get(ctx, "app:k").Val(); v != "4" {
		t.Errorf("db 3 app:k = %q, want 4", v)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Incr(ctx, []string{"k"}, 1, 0); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Incr after Close: %v", err)
	}
	// The store owned the client: it is closed.
	if err := b.(*Store).Client().Ping(ctx).Err(); !errors.Is(err, goredis.ErrClosed) {
		t.Errorf("owned client after Close: %v", err)
	}

	// A wrong password is ErrUnavailable, and the password is not shown.
	u.User = url.UserPassword("alice", "wrong-s3cret")
	b, err = backend.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Incr(ctx, []string{"k"}, 1, 0)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("wrong password: %v", err)
	}

	tlsSrv, _ := testserver.StartRedisTLS(t)
	b, err = backend.Open(ctx, "rediss://"+tlsSrv.Addr+"?skip_verify=true")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Incr(ctx, []string{"k"}, 1, time.Minute); err != nil {
		t.Fatalf("Incr over TLS: %v", err)
	}
	b, err = backend.Open(ctx, "redis://"+tlsSrv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Incr(ctx, []string{"k"}, 1, time.Minute); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("plain text to a TLS server: %v, want ErrUnavailable", err)
	}
}

func TestOpenThroughRegistryErrors(t *testing.T) {
	_, err := backend.Open(context.Background(), "redis+cluster://u:s3cret@a:1/2")
	if !errors.Is(err, backend.ErrInvalidURL) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("%v", err)
	}
	for _, s := range []string{SchemeRedis, SchemeRediss, SchemeCluster, SchemeClusterTLS, SchemeSentinel, SchemeSentinelTLS} {
		found := false
		for _, k := range backend.Schemes() {
			found = found || k == s
		}
		if !found {
			t.Errorf("scheme %s not registered", s)
		}
	}
}

func TestParseURLFragment(t *testing.T) {
	for _, raw := range []string{
		"#://user:s3cret@h/0",
		"redis://u:pa#s3cret@h:1/0",
		"redis://h:1/0#s3cret",
		"redis:s3cret@h",
		"redis://h:1#",
	} {
		_, err := parseURL(raw)
		if !errors.Is(err, backend.ErrInvalidURL) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("parseURL(%q) = %v", raw, err)
		}
	}
}
