package redis

import (
	"context"
	"errors"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// The Lua scripts. Each runs atomically on the server that owns its keys;
// a caller sends only keys of one hash slot to one script (see groups).
// TTLs and durations are in milliseconds; 0 means "no expiry" (PERSIST).
// The last ARGV of a writing script is the one-shot guard, ignored here.
var (
	// incrScript: KEYS counters; ARGV delta, ttl. Returns the new values.
	incrScript = newScript("incr", `
local ttl = tonumber(ARGV[2])
local out = {}
for i, k in ipairs(KEYS) do
  out[i] = redis.call('INCRBY', k, ARGV[1])
  -- Lua numbers are doubles: past 2^53 read the exact value back.
  if out[i] >= 9007199254740992 or out[i] <= -9007199254740992 then out[i] = redis.call('GET', k) end
  if ttl > 0 then redis.call('PEXPIRE', k, ARGV[2]) else redis.call('PERSIST', k) end
end
return out
`)

	// getScript: KEYS; returns value, pttl for each key (value false and
	// pttl -2 when absent).
	getScript = newScript("get", `
local out = {}
for i, k in ipairs(KEYS) do
  out[2*i-1] = redis.call('GET', k)
  out[2*i] = redis.call('PTTL', k)
end
return out
`)

	// reserveScript: KEYS blocks then counters; ARGV nblocks, ttl. Returns
	// {i, value, pttl} for the first block that exists (1-based i), or
	// {0, count1, count2, ...} after incrementing every counter.
	reserveScript = newScript("reserve", `
local nb = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
for i = 1, nb do
  local v = redis.call('GET', KEYS[i])
  if v then return {i, v, redis.call('PTTL', KEYS[i])} end
end
local out = {0}
for i = nb + 1, #KEYS do
  local n = redis.call('INCR', KEYS[i])
  if n >= 9007199254740992 then n = redis.call('GET', KEYS[i]) end
  out[#out + 1] = n
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2]) else redis.call('PERSIST', KEYS[i]) end
end
return out
`)

	// refundScript: KEYS counters; takes back one increment of each, deleting
	// a counter that falls to 0 and leaving the TTL as it is.
	refundScript = newScript("refund", `
for i, k in ipairs(KEYS) do
  if redis.call('DECRBY', k, 1) <= 0 then redis.call('DEL', k) end
end
return #KEYS
`)

	// blockScript: KEYS lockouts, block[, counter]; ARGV window, value, n,
	// duration1..durationN, ifabsent. Escalates, sets the block, drops the
	// counter. Returns {lockouts, duration}, or {-1, pttl} when ifabsent is
	// "1" and the block exists (then nothing is changed).
	blockScript = newScript("block", `
if ARGV[4 + tonumber(ARGV[3])] == '1' then
  local t = redis.call('PTTL', KEYS[2])
  if t ~= -2 then return {-1, t} end
end
local n = redis.call('INCR', KEYS[1])
local w = tonumber(ARGV[1])
if w > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) else redis.call('PERSIST', KEYS[1]) end
local nd = tonumber(ARGV[3])
local i = n
if i > nd then i = nd end
if i < 1 then i = 1 end
local d = ARGV[3 + i]
if tonumber(d) > 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', d)
else
  redis.call('SET', KEYS[2], ARGV[2])
end
if #KEYS >= 3 then redis.call('DEL', KEYS[3]) end
return {n, tonumber(d)}
`)
)

// script is a Lua script with its SHA1, run by EVALSHA and loaded by EVAL
// when the server answers NOSCRIPT.
type script struct {
	name string
	s    *goredis.Script
	sha  string
	src  string
}

func newScript(name, src string) *script {
	s := goredis.NewScript(src)
	return &script{name: name, s: s, sha: s.Hash(), src: src}
}

// call is one script invocation on the keys of one hash slot.
type call struct {
	keys  []string
	args  []any // ARGV without the guard
	write bool  // non-idempotent: add a one-shot guard
	cmd   *goredis.Cmd
}

// errNotResent is what a one-shot guard returns when go-redis tries to send
// a non-idempotent command a second time after a reply was lost.
var errNotResent = errors.New("reply lost; a non-idempotent script is never resent")

// oneShot is the last ARGV of every non-idempotent script. go-redis
// serialises it each time it writes the command; the second time (a retry
// after a network error or timeout, when the script may already have run),
// it fails the write, so the command is never sent twice. A retry after a
// reply that proves the script did not run (MOVED, ASK, TRYAGAIN, LOADING,
// READONLY, CLUSTERDOWN, MASTERDOWN, NOSCRIPT: the cluster client's
// redirections) is let through. This makes any client safe, whatever its
// MaxRetries, without changing its options.
type oneShot struct {
	cmd     *goredis.Cmd
	written bool
}

var guardValue = []byte("1")

// MarshalBinary implements encoding.BinaryMarshaler for go-redis's writer.
func (o *oneShot) MarshalBinary() ([]byte, error) {
	if o.written {
		if err := o.cmd.Err(); err == nil || !notExecuted(err) {
			return nil, errNotResent
		}
	}
	o.written = true
	return guardValue, nil
}

// notExecuted reports whether err is a server reply that proves the command
// was rejected before it ran.
func notExecuted(err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	for _, p := range []string{"MOVED ", "ASK ", "TRYAGAIN ", "LOADING ", "READONLY ", "CLUSTERDOWN ", "MASTERDOWN ", "NOSCRIPT "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// isNoScript reports whether err is the server's NOSCRIPT reply.
func isNoScript(err error) bool {
	return err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT")
}

// newCmd builds EVALSHA (or EVAL with the source when eval is set) for c.
func (sc *script) newCmd(ctx context.Context, c *call, eval bool) *goredis.Cmd {
	n := 3 + len(c.keys) + len(c.args)
	if c.write {
		n++
	}
	args := make([]any, 0, n)
	if eval {
		args = append(args, "eval", sc.src)
	} else {
		args = append(args, "evalsha", sc.sha)
	}
	args = append(args, len(c.keys))
	for _, k := range c.keys {
		args = append(args, k)
	}
	args = append(args, c.args...)
	var g *oneShot
	if c.write {
		g = &oneShot{}
		args = append(args, g)
	}
	cmd := goredis.NewCmd(ctx, args...)
	if g != nil {
		g.cmd = cmd
	}
	return cmd
}

// run executes sc for every call: one EVALSHA for a single call, otherwise
// one pipeline (the cluster client sends each node's part in parallel, so
// the latency is one round trip). Calls answered NOSCRIPT are sent again
// with EVAL, which loads the script (a second round trip, once per server
// and script). On return each call's cmd holds its result or error; run
// returns the first error.
func (s *Store) run(ctx context.Context, sc *script, calls []*call) error {
	if err := s.exec(ctx, sc, calls, false); err != nil {
		return err
	}
	var again []*call
	for _, c := range calls {
		if isNoScript(c.cmd.Err()) {
			again = append(again, c)
		}
	}
	if len(again) > 0 {
		if err := s.exec(ctx, sc, again, true); err != nil {
			return err
		}
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) exec(ctx context.Context, sc *script, calls []*call, eval bool) error {
	for _, c := range calls {
		c.cmd = sc.newCmd(ctx, c, eval)
	}
	if len(calls) == 1 {
		err := s.c.Process(ctx, calls[0].cmd)
		if isNoScript(err) {
			return nil
		}
		return err
	}
	p := s.c.Pipeline()
	for _, c := range calls {
		_ = p.Process(ctx, c.cmd)
	}
	_, err := p.Exec(ctx)
	var re goredis.Error
	if errors.As(err, &re) {
		// A server reply for one of the calls: each cmd holds its own.
		return nil
	}
	return err
}
