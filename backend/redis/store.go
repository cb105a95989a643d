package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
)

// Options configures a Store.
type Options struct {
	// Prefix is prepended to every key the store writes, so that several
	// applications (or tests) can share one Redis database. Keys given to
	// and returned by the Store never include it. Any prefix is correct on a
	// cluster, because keys are grouped by the hash slot of the whole stored
	// key; a prefix holding a hash tag such as "{defender}:" pins every key
	// to one slot (one shard), which is allowed but gives up sharding.
	Prefix string
}

// Store is a backend.Backend (with backend.Reserver, backend.Blocker and
// backend.Notifier) on Redis: standalone, Sentinel (a failover client),
// Cluster or Ring. It is safe for concurrent use.
type Store struct {
	c       goredis.UniversalClient
	owned   bool
	prefix  string
	grouped bool // keys of different hash slots go to different scripts
	ring    bool // grouped by hash tag rather than slot
	channel string

	// Subscription timing (see notify.go); tests shorten it.
	pingEvery, minBackoff, maxBackoff time.Duration

	mu     sync.Mutex
	closed atomic.Bool
	subs   map[*subscription]struct{}
}

var (
	_ backend.Backend  = (*Store)(nil)
	_ backend.Reserver = (*Store)(nil)
	_ backend.Blocker  = (*Store)(nil)
	_ backend.Notifier = (*Store)(nil)
)

// New returns a Store on the application's existing client. The Store does
// not own client: Close leaves it open. A *goredis.ClusterClient or
// *goredis.Ring has its multi-key scripts split by hash slot (hash tag);
// any other client (standalone, failover) sends every key to one server.
//
// For per-call deadlines the client should have ContextTimeoutEnabled set;
// otherwise a hung server is bounded by the client's ReadTimeout rather than
// the context. Retries are safe whatever the client's MaxRetries: the store
// never lets go-redis resend a non-idempotent script whose reply was lost.
// opts may be nil.
func New(client goredis.UniversalClient, opts *Options) *Store {
	s := &Store{c: client, pingEvery: pingEvery, minBackoff: minBackoff, maxBackoff: maxBackoff}
	if opts != nil {
		s.prefix = opts.Prefix
	}
	s.channel = channelName(s.prefix, dbOf(client))
	switch client.(type) {
	case *goredis.ClusterClient:
		s.grouped = true
	case *goredis.Ring:
		s.grouped, s.ring = true, true
	}
	return s
}

// Client returns the go-redis client the store uses.
func (s *Store) Client() goredis.UniversalClient { return s.c }

// Close marks the store closed, ends its subscriptions (each calls its
// onReset last) and waits for them, and closes the client when the store
// opened it from a URL. Further calls return backend.ErrClosed. Close is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.stopSubscriptions()
	if s.owned {
		if err := s.c.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
			return fmt.Errorf("defender/redis: close: %w", err)
		}
	}
	return nil
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return backend.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return s.wrap("", err)
	}
	return nil
}

func (s *Store) key(k string) string {
	if s.prefix == "" {
		return k
	}
	return s.prefix + k
}

// ms converts a TTL to whole milliseconds, rounding up so that a positive
// TTL never becomes 0 (which would mean "never expires").
func ms(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// pttl converts a PTTL reply of an existing key to a TTL: -1 (no expiry)
// is 0, and a key in its last millisecond still has 1ms.
func pttl(v int64) time.Duration {
	switch {
	case v == -1:
		return 0
	case v <= 0:
		return time.Millisecond
	default:
		return time.Duration(v) * time.Millisecond
	}
}

// Incr implements backend.Backend with one script per hash slot (one
// EVALSHA on a standalone server), each INCRBY followed in the same script by
// PEXPIRE (or PERSIST for ttl 0).
func (s *Store) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return nil, err
	}
	if err := backend.CheckTTL(ttl); err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	args := []any{delta, ms(ttl)}
	gs := s.groups(keys)
	calls := make([]*call, len(gs))
	for i, g := range gs {
		calls[i] = &call{keys: g.keys, args: args, write: true}
	}
	if err := s.run(ctx, incrScript, calls); err != nil {
		return nil, s.wrap("incr", err)
	}
	for i, g := range gs {
		vals, err := ints(calls[i].cmd, len(g.idx))
		if err != nil {
			return nil, s.wrap("incr", err)
		}
		for j, at := range g.idx {
			out[at] = vals[j]
		}
	}
	return out, nil
}

// ints reads an array of n integers from cmd.
func ints(cmd *goredis.Cmd, n int) ([]int64, error) {
	vals, err := cmd.Int64Slice()
	if err == nil && len(vals) != n {
		err = fmt.Errorf("script returned %d values for %d keys", len(vals), n)
	}
	return vals, err
}

// SetBlock implements backend.Backend with SET key value PX ttl (plain SET
// for ttl 0). SET is idempotent, so the client may retry it.
func (s *Store) SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckKey(key); err != nil {
		return err
	}
	if err := backend.CheckTTL(ttl); err != nil {
		return err
	}
	var cmd *goredis.Cmd
	if ttl > 0 {
		cmd = s.c.Do(ctx, "set", s.key(key), value, "px", ms(ttl))
	} else {
		cmd = s.c.Do(ctx, "set", s.key(key), value)
	}
	return s.wrap("setblock", cmd.Err())
}

// Get implements backend.Backend with one read-only script per hash slot
// that returns each key's value and PTTL together (atomically).
func (s *Store) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return nil, err
	}
	out := make([]backend.Entry, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	if err := s.get(ctx, keys, out); err != nil {
		return nil, s.wrap("get", err)
	}
	return out, nil
}

// get fills out[i] for keys[i] (keys without the prefix).
func (s *Store) get(ctx context.Context, keys []string, out []backend.Entry) error {
	gs := s.groups(keys)
	calls := make([]*call, len(gs))
	for i, g := range gs {
		calls[i] = &call{keys: g.keys}
	}
	if err := s.run(ctx, getScript, calls); err != nil {
		return err
	}
	for i, g := range gs {
		vals, err := calls[i].cmd.Slice()
		if err == nil && len(vals) != 2*len(g.idx) {
			err = fmt.Errorf("get script returned %d values for %d keys", len(vals), len(g.idx))
		}
		if err != nil {
			return err
		}
		for j, at := range g.idx {
			e := backend.Entry{Key: keys[at]}
			if v, ok := vals[2*j].(string); ok {
				t, _ := vals[2*j+1].(int64)
				if t != -2 {
					e.Found, e.Value, e.TTL = true, []byte(v), pttl(t)
				}
			}
			out[at] = e
		}
	}
	return nil
}

// Delete implements backend.Backend with DEL, one per hash slot (pipelined
// on a cluster). DEL is idempotent.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := backend.CheckKeys(keys); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	gs := s.groups(keys)
	if len(gs) == 1 {
		return s.wrap("delete", s.c.Del(ctx, gs[0].keys...).Err())
	}
	p := s.c.Pipeline()
	for _, g := range gs {
		p.Del(ctx, g.keys...)
	}
	_, err := p.Exec(ctx)
	return s.wrap("delete", err)
}

// Reserve implements backend.Reserver. On a standalone or Sentinel server
// it is one EVALSHA: the script returns the first block that exists or else
// increments every counter. On a cluster the keys are split by hash slot
// and one script per slot is pipelined (one round trip); if one slot found
// a block while another incremented its counters, a second round trip
// refunds those increments.
func (s *Store) Reserve(ctx context.Context, r *backend.Reservation) error {
	r.Blocked = -1
	r.Block = backend.Entry{}
	r.Counts = r.Counts[:0]
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return err
	}
	nb := len(r.Blocks)
	if nb+len(r.Counters) == 0 {
		return nil
	}
	all := make([]string, 0, nb+len(r.Counters))
	all = append(all, r.Blocks...)
	all = append(all, r.Counters...)
	gs := s.groups(all)
	if len(gs) > 1 && !pairsShareSlot(gs, nb, len(r.Counters)) {
		return s.reserveSteps(ctx, r)
	}
	calls := make([]*call, len(gs))
	gbs := make([]int, len(gs)) // blocks per group
	ttl := ms(r.TTL)
	for i, g := range gs {
		// A group's keys are in input order: its blocks come first.
		gb := 0
		for gb < len(g.idx) && g.idx[gb] < nb {
			gb++
		}
		gbs[i] = gb
		calls[i] = &call{keys: g.keys, args: []any{gb, ttl}, write: len(g.idx) > gb}
	}
	if err := s.run(ctx, reserveScript, calls); err != nil {
		return s.wrap("reserve", err)
	}
	counts := make([]int64, len(r.Counters))
	var incremented []string
	for i, g := range gs {
		vals, err := calls[i].cmd.Slice()
		if err != nil {
			return s.wrap("reserve", err)
		}
		blocked, value, t, n, err := reserveReply(vals, gbs[i], len(g.idx)-gbs[i])
		if err != nil {
			return s.wrap("reserve", err)
		}
		if blocked >= 0 {
			if at := g.idx[blocked]; r.Blocked == -1 || at < r.Blocked {
				r.Blocked = at
				r.Block = backend.Entry{Key: all[at], Found: true, Value: []byte(value), TTL: pttl(t)}
			}
			continue
		}
		for k, at := range g.idx[gbs[i]:] {
			counts[at-nb] = n[k]
			incremented = append(incremented, g.keys[gbs[i]+k])
		}
	}
	if r.Blocked >= 0 {
		if len(incremented) > 0 {
			if err := s.refund(ctx, incremented); err != nil {
				return s.wrap("reserve: refund", err)
			}
		}
		return nil
	}
	r.Counts = append(r.Counts, counts...)
	return nil
}

// reserveReply decodes the reserve script's reply for a group of nb blocks
// and nc counters: the index in the group of the block found (or -1), its
// value and PTTL, or the nc counters' new values.
func reserveReply(vals []any, nb, nc int) (blocked int, value string, ttl int64, counts []int64, err error) {
	bad := func() (int, string, int64, []int64, error) {
		return -1, "", 0, nil, fmt.Errorf("bad reserve script reply %v", vals)
	}
	if len(vals) == 0 {
		return bad()
	}
	first, ok := vals[0].(int64)
	if !ok || first < 0 || first > int64(nb) {
		return bad()
	}
	if first > 0 {
		if len(vals) != 3 {
			return bad()
		}
		v, ok1 := vals[1].(string)
		t, ok2 := vals[2].(int64)
		if !ok1 || !ok2 {
			return bad()
		}
		return int(first - 1), v, t, nil, nil
	}
	if len(vals) != 1+nc {
		return bad()
	}
	counts = make([]int64, nc)
	for i, x := range vals[1:] {
		switch v := x.(type) {
		case int64:
			counts[i] = v
		case string: // a count past 2^53, read back exactly
			if counts[i], err = strconv.ParseInt(v, 10, 64); err != nil {
				return bad()
			}
		default:
			return bad()
		}
	}
	return -1, "", 0, counts, nil
}

// pairsShareSlot reports whether Blocks[i] and Counters[i] are in one
// group for every i, so that each pair is read and counted atomically by one
// script (the ordering rule of backend.Reserve).
func pairsShareSlot(gs []group, nb, nc int) bool {
	gid := make([]int, nb+nc)
	for g := range gs {
		for _, at := range gs[g].idx {
			gid[at] = g
		}
	}
	for i := 0; i < nb && i < nc; i++ {
		if gid[i] != gid[nb+i] {
			return false
		}
	}
	return true
}

// coreOnly hides the Reserver and Blocker methods of a Store, so that the
// package functions backend.Reserve and backend.Block use their ordered
// fallbacks on the core methods.
type coreOnly struct{ backend.Backend }

// reserveSteps is Reserve for a cluster when some Blocks[i] and Counters[i]
// are in different slots: backend.Reserve's fallback (increment every
// counter, then read the blocks, then refund when one exists).
func (s *Store) reserveSteps(ctx context.Context, r *backend.Reservation) error {
	return backend.Reserve(ctx, coreOnly{s}, r)
}

// refund takes back one increment of each of the (prefixed) counters.
func (s *Store) refund(ctx context.Context, prefixed []string) error {
	gs := s.groupsPrefixed(prefixed)
	calls := make([]*call, len(gs))
	for i, g := range gs {
		calls[i] = &call{keys: g.keys, write: true}
	}
	return s.run(ctx, refundScript, calls)
}

// Block implements backend.Blocker: one EVALSHA that escalates the lockout
// count, sets the block with the duration it selects and deletes the
// failure counter (with IfAbsent, after looking at the block key in the
// same script). On a cluster this needs the three keys in one hash slot
// (the engine's keys share their identity's hash tag); otherwise Block falls
// back to Incr, SetBlock and Delete (three round trips).
func (s *Store) Block(ctx context.Context, req backend.BlockRequest) (backend.BlockResult, error) {
	if err := req.Validate(); err != nil {
		return backend.BlockResult{}, err
	}
	if err := s.check(ctx); err != nil {
		return backend.BlockResult{}, err
	}
	keys := []string{req.LockoutsKey, req.BlockKey}
	if req.CounterKey != "" {
		keys = append(keys, req.CounterKey)
	}
	gs := s.groups(keys)
	if len(gs) > 1 {
		return s.blockSteps(ctx, req)
	}
	args := make([]any, 0, 4+len(req.Durations))
	args = append(args, ms(req.Window), req.Value, len(req.Durations))
	for _, d := range req.Durations {
		args = append(args, ms(d))
	}
	ifAbsent := "0"
	if req.IfAbsent {
		ifAbsent = "1"
	}
	args = append(args, ifAbsent)
	c := &call{keys: gs[0].keys, args: args, write: true}
	if err := s.run(ctx, blockScript, []*call{c}); err != nil {
		return backend.BlockResult{}, s.wrap("block", err)
	}
	vals, err := ints(c.cmd, 2)
	if err != nil {
		return backend.BlockResult{}, s.wrap("block", err)
	}
	if vals[0] == -1 { // IfAbsent, and a block is there
		return backend.BlockResult{Duration: time.Duration(max(vals[1], 0)) * time.Millisecond, Existing: true}, nil
	}
	return backend.BlockResult{Lockouts: vals[0], Duration: time.Duration(vals[1]) * time.Millisecond}, nil
}

// blockSteps is Block for keys in different hash slots: backend.Block's
// fallback (Incr, SetBlock, Delete, in that order).
func (s *Store) blockSteps(ctx context.Context, req backend.BlockRequest) (backend.BlockResult, error) {
	return backend.Block(ctx, coreOnly{s}, req)
}
