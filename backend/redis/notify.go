package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
)

// Timing of subscriptions (fields of Store, so that tests can shorten them).
const (
	// pingEvery is how long a subscription waits for a message before it
	// sends a PING, and then for any reply before it takes the connection
	// for dead (a server frozen or a link cut without a reset): a dead
	// connection is replaced within two intervals.
	pingEvery = 3 * time.Second
	// minBackoff and maxBackoff bound the wait between two attempts to
	// re-establish a subscription (doubling from min to max).
	minBackoff = 10 * time.Millisecond
	maxBackoff = time.Second
)

// errNoPong ends a session whose connection did not answer a PING in time.
var errNoPong = errors.New("no reply to PING on the subscription connection")

// channelName is the pub/sub channel of a store: its prefix, a fixed
// middle, and its database number. Channels are global to a server (not per
// database), so the database is part of the name; the name is injective in
// (prefix, db) because the middle holds non-digits and the end only digits.
func channelName(prefix string, db int) string {
	return prefix + "defender:notify:" + strconv.Itoa(db)
}

// dbOf returns the database number of client, 0 when it has none (a cluster)
// or its type is unknown.
func dbOf(client goredis.UniversalClient) int {
	switch c := client.(type) {
	case *goredis.Client:
		return c.Options().DB
	case *goredis.Ring:
		return c.Options().DB
	}
	return 0
}

// Channel returns the pub/sub channel on which the store's Notify publishes
// and its subscriptions listen: Options.Prefix, "defender:notify:", and the
// client's database number (channels are shared by every database of a
// server). Stores of one prefix and database share it; any other store
// never hears it.
func (s *Store) Channel() string { return s.channel }

// Notify implements backend.Notifier: one PUBLISH of the keys, separated by
// spaces (keys never hold one), on the store's channel. PUBLISH may be
// retried by the client: a key announced twice is only read again.
//
// go-redis sends PUBLISH to a random node of a cluster or shard of a Ring
// (it treats the command as keyless). Notify routes it by the channel
// instead, like a key: on a cluster to the master of the channel's slot,
// where the subscriptions are (the cluster bus forwards it to every other
// node, so a subscriber connected anywhere hears it), so that announcements
// made one after the other arrive in that order; on a Ring to every live
// shard, in parallel, because a Ring's shards do not forward messages to
// each other and a subscriber stays on the shard where it subscribed when
// the ring's membership changes.
func (s *Store) Notify(ctx context.Context, keys ...string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	payload := strings.Join(keys, " ")
	if r, ok := s.c.(*goredis.Ring); ok {
		var shards atomic.Int32
		err := r.ForEachShard(ctx, func(ctx context.Context, c *goredis.Client) error {
			shards.Add(1)
			return c.Publish(ctx, s.channel, payload).Err()
		})
		if err == nil && shards.Load() == 0 {
			err = errNoShard
		}
		return s.wrap("notify", err)
	}
	cmd := goredis.NewIntCmd(ctx, "publish", s.channel, payload)
	cmd.SetFirstKeyPos(1)
	_ = s.c.Process(ctx, cmd)
	return s.wrap("notify", cmd.Err())
}

// errNoShard is Notify on a Ring none of whose shards is up.
var errNoShard = errors.New("no shard of the ring is up")

// Subscribe implements backend.Notifier. Each subscription has a goroutine
// and a connection of its own, outside the client's command pool (go-redis
// dials pub/sub connections apart), so it never takes a connection from the
// logins. The connection goes to the server that the client routes the
// channel to: the standalone server, the current Sentinel master, the master
// of the channel's slot on a cluster, or the channel's shard of a Ring.
//
// A session subscribes, waits for the server's confirmation and then calls
// onReset; it ends on any error, and on a PING left unanswered for the
// health-check interval (3s). The next session starts after a backoff of
// 10ms doubling to 1s, and calls onReset once it is confirmed.
func (s *Store) Subscribe(onKey func(key string), onReset func()) (stop func(), err error) {
	if onKey == nil || onReset == nil {
		return nil, fmt.Errorf("%w: Subscribe needs both onKey and onReset", backend.ErrInvalid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscription{s: s, onKey: onKey, onReset: onReset, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		cancel()
		return nil, backend.ErrClosed
	}
	if s.subs == nil {
		s.subs = map[*subscription]struct{}{}
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go sub.run()
	return sub.stop, nil
}

// stopSubscriptions ends every subscription (each calls onReset last) and
// waits for them. Called by Close once the store is marked closed, so no
// subscription can be added meanwhile.
func (s *Store) stopSubscriptions() {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for sub := range subs {
		sub.end(true)
	}
	for sub := range subs {
		<-sub.done
	}
}

// subscription is one Subscribe: a goroutine running sessions until ended.
type subscription struct {
	s       *Store
	onKey   func(string)
	onReset func()
	ctx     context.Context // cancelled when ended: aborts dials and waits
	cancel  context.CancelFunc
	done    chan struct{} // closed when the goroutine returns

	mu     sync.Mutex
	ps     *goredis.PubSub // the current session's, nil between sessions
	ended  bool            // stop or Close was called: no new session
	byStop bool            // ended by stop: no final onReset
}

// stop is the function Subscribe returns.
func (sub *subscription) stop() {
	sub.end(false)
	sub.s.mu.Lock()
	delete(sub.s.subs, sub)
	sub.s.mu.Unlock()
	<-sub.done
}

// end asks the goroutine to return: it closes the current session's
// connection (which interrupts a waiting receive) and cancels the context
// (which interrupts a dial or a backoff). The first call decides whether the
// goroutine calls onReset last (closed) or not (stopped).
func (sub *subscription) end(closed bool) {
	sub.mu.Lock()
	if !sub.ended {
		sub.ended, sub.byStop = true, !closed
	}
	ps := sub.ps
	sub.mu.Unlock()
	sub.cancel()
	if ps != nil {
		_ = ps.Close()
	}
}

func (sub *subscription) isEnded() (ended, byStop bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.ended, sub.byStop
}

// run is the subscription's goroutine: sessions, with a backoff between
// them, until ended.
func (sub *subscription) run() {
	defer close(sub.done)
	backoff := sub.s.minBackoff
	for {
		established, err := sub.session()
		if ended, byStop := sub.isEnded(); ended {
			if !byStop {
				sub.onReset()
			}
			return
		}
		if errors.Is(err, goredis.ErrClosed) {
			// The client was closed under the store: no session can
			// start again.
			sub.onReset()
			return
		}
		if established {
			backoff = sub.s.minBackoff
		}
		if cc, ok := sub.s.c.(*goredis.ClusterClient); ok {
			// The channel's master may have changed (a failover): let the
			// client read the slot map again (asynchronously) rather than
			// at its next periodic reload, up to 10s later.
			cc.ReloadState(sub.ctx)
		}
		var refused goredis.Error
		if errors.As(err, &refused) {
			// The server answered, but not with messages: it is up,
			// and announcements are being missed.
			sub.onReset()
		}
		t := time.NewTimer(backoff)
		select {
		case <-sub.ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, sub.s.maxBackoff)
	}
}

// session subscribes once and delivers messages until an error. It reports
// whether the subscription was confirmed (and onReset called).
func (sub *subscription) session() (established bool, err error) {
	ps, err := sub.open()
	if err != nil {
		return false, err
	}
	defer sub.close(ps)
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(sub.ctx, sub.s.pingEvery)
		if err != nil {
			if !isTimeout(err) {
				return established, err
			}
			// Nothing for a whole interval: PING, and if nothing came
			// back for another interval either (or the PING could not be
			// written), the connection is dead.
			if pinged || ps.Ping(sub.ctx) != nil {
				return established, errNoPong
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *goredis.Subscription:
			// The confirmation of SUBSCRIBE. A second one in a session
			// means that go-redis subscribed again on a new connection
			// by itself: there was a gap, so it calls onReset too.
			if m.Kind == "subscribe" && m.Channel == sub.s.channel {
				established = true
				sub.onReset()
			}
		case *goredis.Message:
			sub.deliver(m.Payload)
		}
	}
}

// open starts a session: SUBSCRIBE through the client (go-redis dials a
// dedicated connection). It fails when the subscription has ended.
func (sub *subscription) open() (ps *goredis.PubSub, err error) {
	if ended, _ := sub.isEnded(); ended {
		return nil, backend.ErrClosed
	}
	defer func() {
		// A Ring panics instead of returning an error when no shard is up
		// or it is closed.
		if p := recover(); p != nil {
			err = fmt.Errorf("subscribe: panic: %v", p)
			if e, ok := p.(error); ok {
				err = e // goredis.ErrClosed for a closed Ring
			}
		}
	}()
	ps = sub.s.c.Subscribe(sub.ctx, sub.s.channel)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.ended {
		_ = ps.Close()
		return nil, backend.ErrClosed
	}
	sub.ps = ps
	return ps, nil
}

// close ends a session.
func (sub *subscription) close(ps *goredis.PubSub) {
	sub.mu.Lock()
	sub.ps = nil
	sub.mu.Unlock()
	_ = ps.Close()
}

// deliver calls onKey for each key of a message, or onReset for a message
// that is not a list of valid keys (sent by something else, or by a future
// version): what changed is unknown.
func (sub *subscription) deliver(payload string) {
	keys := strings.Split(payload, " ")
	if backend.CheckKeys(keys) != nil {
		sub.onReset()
		return
	}
	for _, k := range keys {
		sub.onKey(k)
	}
}

// isTimeout reports whether err is a read deadline passing (the connection
// is kept: go-redis does not reconnect after it).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
