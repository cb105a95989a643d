package redis

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

// events records the callbacks of one subscription, for the tests of this
// file (the conformance suite has its own).
type events struct {
	mu      sync.Mutex
	keys    []string
	at      []time.Time // arrival time of each key
	resets  []int       // len(keys) at each onReset
	changed chan struct{}
}

func newEvents() *events { return &events{changed: make(chan struct{}, 1)} }

func (e *events) onKey(k string) {
	e.mu.Lock()
	e.keys = append(e.keys, k)
	e.at = append(e.at, time.Now())
	e.mu.Unlock()
	e.signal()
}

func (e *events) onReset() {
	e.mu.Lock()
	e.resets = append(e.resets, len(e.keys))
	e.mu.Unlock()
	e.signal()
}

func (e *events) signal() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

func (e *events) snapshot() (keys []string, resets []int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.keys), slices.Clone(e.resets)
}

// waitFor waits until cond holds, or fails the test after timeout.
func (e *events) waitFor(t testing.TB, timeout time.Duration, what string, cond func(keys []string, resets []int) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if cond(e.snapshot()) {
			return
		}
		select {
		case <-e.changed:
		case <-deadline.C:
			keys, resets := e.snapshot()
			t.Fatalf("%s: not within %v (keys %q, onReset after keys %v)", what, timeout, keys, resets)
		}
	}
}

// resets waits for the n-th onReset.
func (e *events) waitResets(t testing.TB, n int, what string) {
	t.Helper()
	e.waitFor(t, 30*time.Second, what, func(_ []string, r []int) bool { return len(r) >= n })
}

// waitKey waits until key has arrived.
func (e *events) waitKey(t testing.TB, key, what string) {
	t.Helper()
	e.waitFor(t, 30*time.Second, what, func(k []string, _ []int) bool { return slices.Contains(k, key) })
}

// subscribeEvents subscribes to s and waits until the subscription is
// established (its first onReset). It is stopped when the test ends.
func subscribeEvents(t testing.TB, s *Store) *events {
	t.Helper()
	e := newEvents()
	stop, err := s.Subscribe(e.onKey, e.onReset)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(stop)
	e.waitResets(t, 1, "subscription established")
	return e
}

// TestNotifyLatency: two stores on two clients (two processes) on one
// server; each of 200 announcements made through A is received by B and by
// A itself. The test asserts delivery and logs the latency distribution
// (time from the call of Notify to onKey), never asserting a speed.
func TestNotifyLatency(t *testing.T) {
	t.Parallel()
	a, b := twoProcesses(t, testserver.StartRedis(t))
	ea, eb := subscribeEvents(t, a), subscribeEvents(t, b)
	const n = 200
	sent := make([]time.Time, n)
	for i := range n {
		key := fmt.Sprintf("defender:b:{u:user%d}", i)
		sent[i] = time.Now()
		if err := a.Notify(tctx(t), key); err != nil {
			t.Fatalf("Notify %d: %v", i, err)
		}
		ea.waitKey(t, key, "A hears its own announcement")
		eb.waitKey(t, key, "B hears A's announcement")
	}
	for name, e := range map[string]*events{"A (self)": ea, "B (other process)": eb} {
		keys, resets := e.snapshot()
		if len(keys) != n || len(resets) != 1 {
			t.Fatalf("%s: %d keys and %d onReset, want %d and 1", name, len(keys), len(resets), n)
		}
		lat := make([]time.Duration, n)
		for i := range n {
			if keys[i] != fmt.Sprintf("defender:b:{u:user%d}", i) {
				t.Fatalf("%s: key %d is %q, out of order", name, i, keys[i])
			}
			lat[i] = e.at[i].Sub(sent[i])
		}
		slices.Sort(lat)
		over := 0
		for _, l := range lat {
			if l > 100*time.Millisecond {
				over++
			}
		}
		t.Logf("notify latency to %s over %d announcements: p50 %v, p99 %v, max %v; %d over 100ms",
			name, n, lat[n/2].Round(time.Microsecond), lat[n*99/100-1].Round(time.Microsecond), lat[n-1].Round(time.Microsecond), over)
	}
}

// twoProcesses returns two stores with one fresh prefix on two clients of
// the server at addr, as two processes sharing it would have them.
func twoProcesses(t testing.TB, addr string) (a, b *Store) {
	t.Helper()
	prefix := uniquePrefix()
	newStore := func() *Store {
		c := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		return openPrefixed(t, c, prefix)
	}
	return newStore(), newStore()
}

// openPrefixed returns a store with prefix on client, closed at the end of
// the test.
func openPrefixed(t testing.TB, client goredis.UniversalClient, prefix string) *Store {
	t.Helper()
	s := New(client, &Options{Prefix: prefix})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSubscribeServerRestart: a server stopped and started again on the same
// port interrupts every subscription; each calls onReset once re-established,
// and announcements made after the restart arrive again. Notify while the
// server is down is ErrUnavailable.
func TestSubscribeServerRestart(t *testing.T) {
	t.Parallel()
	srv := testserver.StartRedisServer(t)
	a, b := twoProcesses(t, srv.Addr)
	ea, eb := subscribeEvents(t, a), subscribeEvents(t, b)
	if err := a.Notify(tctx(t), "before"); err != nil {
		t.Fatal(err)
	}
	eb.waitKey(t, "before", "B hears an announcement before the restart")

	srv.Stop()
	if err := a.Notify(tctx(t), "down"); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Notify with the server down: %v, want ErrUnavailable", err)
	}
	srv.Restart()
	ea.waitResets(t, 2, "A's onReset after the restart")
	eb.waitResets(t, 2, "B's onReset after the restart")
	if err := a.Notify(tctx(t), "after"); err != nil {
		t.Fatalf("Notify after the restart: %v", err)
	}
	eb.waitKey(t, "after", "B hears an announcement after the restart")
	ea.waitKey(t, "after", "A hears its own announcement after the restart")
	keys, resets := eb.snapshot()
	if !slices.Equal(keys, []string{"before", "after"}) || !slices.Equal(resets, []int{0, 1}) {
		t.Errorf("B: keys %q, onReset after keys %v; want [before after] and [0 1]", keys, resets)
	}
}

// TestSubscribeDeadConnection: a server that stops answering without closing
// the connection (CLIENT PAUSE here; a frozen host or a cut link in
// production) is detected by the unanswered PING, and the subscription is
// re-established, with onReset, once the server answers again.
func TestSubscribeDeadConnection(t *testing.T) {
	t.Parallel()
	srv, c := standalone(t)
	s := openStore(t, c)
	s.pingEvery = 100 * time.Millisecond
	e := subscribeEvents(t, s)
	admin := srv.Client()
	if err := admin.Do(tctx(t), "client", "pause", 1500, "all").Err(); err != nil {
		t.Fatal(err)
	}
	e.waitResets(t, 2, "onReset after the server answered again")
	if err := s.Notify(tctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	e.waitKey(t, "k", "an announcement after the pause")
}

// TestSubscribeRefused: a user whose ACL forbids the channel gets NOPERM
// for SUBSCRIBE. The store is up and announcements are missed, so the
// subscription calls onReset after each refused attempt; once the channel
// is allowed, it is established and announcements arrive.
func TestSubscribeRefused(t *testing.T) {
	t.Parallel()
	srv, admin := standalone(t)
	ctx := tctx(t)
	if err := admin.Do(ctx, "acl", "setuser", "app", "on", ">pw", "~*", "+@all", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: "app", Password: "pw", ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	s := openStore(t, c)
	s.maxBackoff = 50 * time.Millisecond
	e := newEvents()
	stop, err := s.Subscribe(e.onKey, e.onReset)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	e.waitResets(t, 3, "onReset after each refused attempt")
	if err := s.Notify(ctx, "k"); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Notify on a forbidden channel: %v, want the server's NOPERM", err)
	}
	if err := admin.Do(ctx, "acl", "setuser", "app", "&"+s.Channel()).Err(); err != nil {
		t.Fatal(err)
	}
	// Once established (no more refusals), an announcement through the
	// admin's store arrives: announce until one does.
	pub := openPrefixed(t, admin, s.prefix)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		key := fmt.Sprintf("k%d", i)
		_, before := e.snapshot()
		if err := pub.Notify(ctx, key); err != nil {
			t.Fatal(err)
		}
		got := false
		e.waitFor(t, 30*time.Second, "the announcement or another refusal", func(k []string, r []int) bool {
			got = slices.Contains(k, key)
			return got || len(r) > len(before)
		})
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no announcement arrived after the channel was allowed")
		}
	}
}

// TestSubscribeOwnConnection: a subscription takes no connection from the
// client's command pool (go-redis dials pub/sub connections apart), so
// logins never wait for one, even with a pool of one connection.
func TestSubscribeOwnConnection(t *testing.T) {
	t.Parallel()
	srv, _ := standalone(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, PoolSize: 1, PoolTimeout: 100 * time.Millisecond, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	s := openStore(t, c)
	for range 3 {
		subscribeEvents(t, s)
	}
	st := c.PoolStats()
	if st.TotalConns != 0 || st.PubSubStats.Active != 3 {
		t.Errorf("with 3 subscriptions: %d command-pool connections and %d pub/sub connections, want 0 and 3", st.TotalConns, st.PubSubStats.Active)
	}
	r := backend.Reservation{Blocks: []string{"b"}, Counters: []string{"f"}, TTL: time.Minute}
	for i := range 20 {
		if err := s.Reserve(tctx(t), &r); err != nil {
			t.Fatalf("Reserve %d with a pool of one and 3 subscriptions: %v", i, err)
		}
	}
	if st := c.PoolStats(); st.TotalConns != 1 || st.Timeouts != 0 {
		t.Errorf("after 20 reservations: %d command-pool connections, %d pool timeouts; want 1 and 0", st.TotalConns, st.Timeouts)
	}
}

// TestSubscriptionGoroutines: a subscription's goroutine ends when stop or
// Close returns (not parallel: it counts the goroutines of the package).
func TestSubscriptionGoroutines(t *testing.T) {
	srv := testserver.StartRedisServer(t)
	s, err := Open(context.Background(), "redis://"+srv.Addr+"?prefix="+uniquePrefix())
	if err != nil {
		t.Fatal(err)
	}
	if n := subscriptionGoroutines(); n != 0 {
		t.Fatalf("%d subscription goroutines before the test", n)
	}
	e1, e2 := newEvents(), newEvents()
	stop1, err := s.Subscribe(e1.onKey, e1.onReset)
	if err != nil {
		t.Fatal(err)
	}
	stop2, err := s.Subscribe(e2.onKey, e2.onReset)
	if err != nil {
		t.Fatal(err)
	}
	e1.waitResets(t, 1, "first subscription")
	e2.waitResets(t, 1, "second subscription")
	if n := subscriptionGoroutines(); n != 2 {
		t.Errorf("%d subscription goroutines with 2 subscriptions, want 2", n)
	}
	stop1()
	if n := subscriptionGoroutines(); n != 1 {
		t.Errorf("%d subscription goroutines after one stop, want 1", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := subscriptionGoroutines(); n != 0 {
		t.Errorf("%d subscription goroutines after Close, want 0", n)
	}
	if _, r := e2.snapshot(); len(r) != 2 {
		t.Errorf("the subscription ended by Close had %d onReset, want 2 (established, closed)", len(r))
	}
	if _, r := e1.snapshot(); len(r) != 1 {
		t.Errorf("the stopped subscription had %d onReset, want 1 (stop calls none)", len(r))
	}
	stop2() // after Close: returns at once
	// A subscription that has not yet reached the server ends too.
	s2 := New(goredis.NewClient(&goredis.Options{Addr: srv.Addr, MaxRetries: -1}), nil)
	s2.owned = true
	e3 := newEvents()
	if _, err := s2.Subscribe(e3.onKey, e3.onReset); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if n := subscriptionGoroutines(); n != 0 {
		t.Errorf("%d subscription goroutines after Close of a fresh subscription, want 0", n)
	}
	if _, r := e3.snapshot(); len(r) == 0 || r[len(r)-1] != 0 {
		t.Errorf("a subscription ended by Close: onReset after keys %v, want a last onReset", r)
	}
}

// subscriptionGoroutines counts the goroutines running subscriptions.
func subscriptionGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), "backend/redis.(*subscription).run(")
}

// TestSubscribeClientClosed: when the application closes the client of a
// store made by New (the store does not own it), no subscription can be
// kept: each calls onReset one last time and its goroutine ends; stop then
// returns at once. A Ring, which panics instead of failing when closed, too.
func TestSubscribeClientClosed(t *testing.T) {
	t.Parallel()
	addr := testserver.StartRedis(t)
	for _, tc := range []struct {
		name   string
		client func() goredis.UniversalClient
	}{
		{"standalone", func() goredis.UniversalClient {
			return goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
		}},
		{"ring", func() goredis.UniversalClient {
			return goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": addr}, MaxRetries: -1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.client()
			s := openStore(t, c)
			e := newEvents()
			stop, err := s.Subscribe(e.onKey, e.onReset)
			if err != nil {
				t.Fatal(err)
			}
			e.waitResets(t, 1, "established")
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			e.waitResets(t, 2, "the last onReset after the client was closed")
			stop()
			if _, r := e.snapshot(); len(r) != 2 {
				t.Errorf("onReset after keys %v, want exactly 2", r)
			}
		})
	}
}

// TestNotifyMalformed: a message on the channel that is not a list of valid
// keys (published by something else) makes the subscription call onReset,
// never onKey with a bad key.
func TestNotifyMalformed(t *testing.T) {
	t.Parallel()
	_, c := standalone(t)
	s := openStore(t, c)
	e := subscribeEvents(t, s)
	for i, payload := range []string{"", "a  b", "ok bad\x01key", strings.Repeat("x", backend.MaxKeyLen+1)} {
		if err := c.Publish(tctx(t), s.Channel(), payload).Err(); err != nil {
			t.Fatal(err)
		}
		e.waitResets(t, i+2, fmt.Sprintf("onReset for the message %q", payload))
	}
	if err := c.Publish(tctx(t), s.Channel(), "good1 good2").Err(); err != nil {
		t.Fatal(err)
	}
	e.waitKey(t, "good2", "a valid message")
	if keys, _ := e.snapshot(); !slices.Equal(keys, []string{"good1", "good2"}) {
		t.Errorf("keys %q, want only those of the valid message", keys)
	}
}

// TestChannel: the channel holds the prefix and the database number
// (channels are global to a server), so stores of other prefixes or
// databases on one server never hear each other.
func TestChannel(t *testing.T) {
	t.Parallel()
	addr := testserver.StartRedis(t)
	mk := func(db int, prefix string) *Store {
		c := goredis.NewClient(&goredis.Options{Addr: addr, DB: db, ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		return openPrefixed(t, c, prefix)
	}
	s0, s1, p0 := mk(0, "app:"), mk(1, "app:"), mk(0, "other:")
	for _, tc := range []struct {
		s    *Store
		want string
	}{{s0, "app:defender:notify:0"}, {s1, "app:defender:notify:1"}, {p0, "other:defender:notify:0"}} {
		if got := tc.s.Channel(); got != tc.want {
			t.Errorf("Channel() = %q, want %q", got, tc.want)
		}
	}
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": addr}, DB: 2})
	t.Cleanup(func() { _ = ring.Close() })
	if got := New(ring, nil).Channel(); got != "defender:notify:2" {
		t.Errorf("ring Channel() = %q, want defender:notify:2", got)
	}
	e0, e1 := subscribeEvents(t, s0), subscribeEvents(t, s1)
	if err := s1.Notify(tctx(t), "db1"); err != nil {
		t.Fatal(err)
	}
	e1.waitKey(t, "db1", "db 1 hears db 1")
	if err := s0.Notify(tctx(t), "db0"); err != nil {
		t.Fatal(err)
	}
	e0.waitKey(t, "db0", "db 0 hears db 0")
	if k, _ := e0.snapshot(); !slices.Equal(k, []string{"db0"}) {
		t.Errorf("db 0 heard %q, want only its own announcement", k)
	}
}

// TestNotifyRingShards: on a Ring, Notify publishes on every live shard, so
// a subscriber hears it whichever shard it is connected to; with no shard
// up it is ErrUnavailable.
func TestNotifyRingShards(t *testing.T) {
	t.Parallel()
	a, b := testserver.StartRedisServer(t), testserver.StartRedisServer(t)
	ring := goredis.NewRing(&goredis.RingOptions{
		Addrs:              map[string]string{"a": a.Addr, "b": b.Addr},
		HeartbeatFrequency: 50 * time.Millisecond, ContextTimeoutEnabled: true, MaxRetries: -1,
	})
	t.Cleanup(func() { _ = ring.Close() })
	s := openStore(t, ring)
	// A subscriber connected directly to each shard.
	var es []*events
	for _, srv := range []*testserver.RedisServer{a, b} {
		e := newEvents()
		ps := srv.Client().Subscribe(tctx(t), s.Channel())
		t.Cleanup(func() { _ = ps.Close() })
		if _, err := ps.Receive(tctx(t)); err != nil {
			t.Fatal(err)
		}
		go func() {
			for m := range ps.Channel() {
				e.onKey(m.Payload)
			}
		}()
		es = append(es, e)
	}
	if err := s.Notify(tctx(t), "k1", "k2"); err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		e.waitKey(t, "k1 k2", fmt.Sprintf("shard %d hears the announcement", i))
	}
	a.Kill()
	b.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Notify(tctx(t), "k3")
		if errors.Is(err, backend.ErrUnavailable) && strings.Contains(err.Error(), errNoShard.Error()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Notify with every shard down: %v, want ErrUnavailable saying no shard is up", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubscribeSentinelFailover: when Sentinel promotes the replica of a
// crashed master, every subscription is re-established on the new master
// (onReset), and announcements arrive again.
func TestSubscribeSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := testserver.StartRedisSentinel(t)
	url := "redis+sentinel://" + rs.Sentinel.Addr + "/" + testserver.SentinelMaster + "?prefix=" + uniquePrefix()
	a, b := openTestURL(t, url), openTestURL(t, url)
	ea, eb := subscribeEvents(t, a), subscribeEvents(t, b)
	if err := a.Notify(tctx(t), "before"); err != nil {
		t.Fatal(err)
	}
	eb.waitKey(t, "before", "an announcement before the failover")
	resumes(t, "sentinel: master killed, replica promoted", a, ea, eb, func() error {
		return rs.KillMasterAndWaitFailover(ctx, 30*time.Second)
	})
}

// TestSubscribeCluster: on a cluster, a message published on any node, a
// replica included, reaches the subscribers (the cluster bus forwards it);
// when the master the subscriptions are connected to crashes and its replica
// is promoted, they are re-established (onReset) and hear announcements
// again.
func TestSubscribeCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc := testserver.StartRedisCluster(t, 3, 1)
	url := "redis+cluster://" + rc.Nodes[0].Addr + "," + rc.Nodes[1].Addr + "?prefix=" + uniquePrefix()
	a, b := openTestURL(t, url), openTestURL(t, url)
	ea, eb := subscribeEvents(t, a), subscribeEvents(t, b)
	var want []string
	for i, n := range rc.Nodes {
		key := fmt.Sprintf("node%d", i)
		if err := n.Client().Publish(tctx(t), b.Channel(), key).Err(); err != nil {
			t.Fatalf("PUBLISH on node %d: %v", i, err)
		}
		want = append(want, key)
		eb.waitKey(t, key, fmt.Sprintf("B hears a message published on node %d", i))
	}
	if err := a.Notify(tctx(t), "via-a"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "via-a")
	eb.waitKey(t, "via-a", "B hears A's announcement")
	ea.waitKey(t, "via-a", "A hears its own announcement")
	if keys, _ := eb.snapshot(); !slices.Equal(keys, want) {
		t.Errorf("B received %q, want %q", keys, want)
	}

	master, err := rc.MasterOf(ctx, b.Channel())
	if err != nil {
		t.Fatal(err)
	}
	replica, err := rc.ReplicaOf(ctx, master)
	if err != nil {
		t.Fatal(err)
	}
	resumes(t, "cluster: the channel's master killed, replica promoted, cluster ok", a, ea, eb, func() error {
		return rc.KillAndWaitPromotion(ctx, master, replica, 30*time.Second)
	})
}

// resumes runs failover, then checks that the subscriptions of A (ea) and
// B (eb) are re-established (a second onReset) and that an announcement
// through a reaches both. It logs how long each step took.
func resumes(t *testing.T, what string, a *Store, ea, eb *events, failover func() error) {
	t.Helper()
	cut := time.Now()
	if err := failover(); err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(cut)
	ea.waitResets(t, 2, "A re-established after the failover")
	eb.waitResets(t, 2, "B re-established after the failover")
	t.Logf("%s after %v; subscriptions re-established after %v", what,
		promoted.Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))
	notifyUntil(t, a, eb, "after")
	ea.waitKey(t, "after", "A hears its own announcement after the failover")
}

// openTestURL opens a store by URL, closed at the end of the test.
func openTestURL(t testing.TB, url string) *Store {
	t.Helper()
	s, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// notifyUntil announces key through s until Notify succeeds (the client may
// still be finding the new master after a failover), then waits for e to
// receive it.
func notifyUntil(t testing.TB, s *Store, e *events, key string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Notify(tctx(t), key)
		if err == nil {
			break
		}
		if !errors.Is(err, backend.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Notify after the failover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.waitKey(t, key, "an announcement after the failover")
}

// TestStopInterrupts: stop returns at once whatever the subscription is
// doing: waiting out a backoff (after a refusal, here with a backoff of an
// hour), or subscribing on a server that does not answer yet (CLIENT PAUSE:
// the new connection's HELLO waits for the pause to end; the subscription
// then ends without a session).
func TestStopInterrupts(t *testing.T) {
	t.Parallel()
	srv, admin := standalone(t)
	ctx := tctx(t)
	t.Run("backoff", func(t *testing.T) {
		if err := admin.Do(ctx, "acl", "setuser", "nochan", "on", ">pw", "~*", "+@all", "resetchannels").Err(); err != nil {
			t.Fatal(err)
		}
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: "nochan", Password: "pw", ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		s := openStore(t, c)
		s.minBackoff, s.maxBackoff = time.Hour, time.Hour
		e := newEvents()
		stop, err := s.Subscribe(e.onKey, e.onReset)
		if err != nil {
			t.Fatal(err)
		}
		e.waitResets(t, 1, "the onReset of the refusal, before the backoff")
		stopWithin(t, stop, "during a backoff of an hour")
	})
	t.Run("subscribing", func(t *testing.T) {
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ReadTimeout: 20 * time.Second, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		s := openStore(t, c)
		if err := admin.Do(ctx, "client", "pause", 1000, "all").Err(); err != nil {
			t.Fatal(err)
		}
		e := newEvents()
		stop, err := s.Subscribe(e.onKey, e.onReset)
		if err != nil {
			t.Fatal(err)
		}
		waitCond(t, "the subscription's connection dialled", func() bool { return c.PoolStats().PubSubStats.Created == 1 })
		stopWithin(t, stop, "while subscribing")
		if keys, resets := e.snapshot(); len(keys)+len(resets) != 0 {
			t.Errorf("callbacks of a subscription stopped before it was established: keys %q, onReset after keys %v", keys, resets)
		}
	})
}

// stopWithin calls stop and fails the test if it has not returned after
// 30s (it should return at once; the bound only catches a hang).
func stopWithin(t *testing.T, stop func(), what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("stop %s did not return", what)
	}
}

// waitCond polls cond until it holds, or fails the test after 30s.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
