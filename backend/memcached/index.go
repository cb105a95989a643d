package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/go-defender/defender/backend"
)

// The index. Memcached cannot list keys, so the Store records the keys it
// writes in index keys: for each family (blocks, counters) IndexShards keys
// named prefix + "\xff" + family + shard number (0xff never occurs in an
// engine key, so they cannot collide with one). A key belongs to shard
// fnv32a(key) % IndexShards. A shard's value is one line per member,
// "<until-unix-ms> <key>\n" (0 = permanent), rewritten with gets + cas.
const (
	familyBlocks   = 'b'
	familyCounters = 'c'
)

// ixReq is a counter index update for the indexer goroutine, a flush
// request (done != nil) answered once every earlier update is written, or a
// compaction request.
type ixReq struct {
	key   string
	until int64
	done  chan error
	// compact (with family and shard) asks for a shard's compaction.
	compact bool
	family  byte
	shard   int
}

func (s *Store) shardOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(s.shards))
}

func (s *Store) shardKey(family byte, shard int) string {
	b := make([]byte, 0, len(s.prefix)+8)
	b = append(b, s.prefix...)
	b = append(b, 0xff, family)
	return string(strconv.AppendInt(b, int64(shard), 10))
}

// parseIndex decodes a shard value into member -> until (the latest until
// of a member listed more than once), the members in the order they first
// appear, and the number of lines. Malformed lines (which this package
// never writes) are skipped.
func parseIndex(v []byte) (map[string]int64, []string, int) {
	n := bytes.Count(v, []byte{'\n'})
	m := make(map[string]int64, n)
	order := make([]string, 0, n)
	lines := 0
	for len(v) > 0 {
		line := v
		if i := bytes.IndexByte(v, '\n'); i >= 0 {
			line, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		lines++
		until, key, ok := cutInt(line)
		if !ok || len(key) == 0 {
			continue
		}
		k := string(key)
		if cur, seen := m[k]; !seen {
			m[k] = until
			order = append(order, k)
		} else if later(until, cur) {
			m[k] = until
		}
	}
	return m, order, lines
}

func encodeIndex(m map[string]int64) []byte {
	keys := make([]string, 0, len(m))
	size := 0
	for k := range m {
		keys = append(keys, k)
		size += len(k) + 16
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	for _, k := range keys {
		b = strconv.AppendInt(b, m[k], 10)
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, '\n')
	}
	return b
}

func lineLen(key string, until int64) int {
	return len(strconv.FormatInt(until, 10)) + len(key) + 2
}

// later reports whether until a outlasts until b (0 = forever).
func later(a, b int64) bool {
	if b == 0 {
		return false
	}
	return a == 0 || a > b
}

// appendIndex records entries (member -> until) in a shard of family with
// one "append" (an "add" when the shard does not exist yet): O(1) whatever
// the shard's size. Shards only grow here; compactIndex prunes them, in the
// background once this process has appended a fraction of IndexShardBytes
// to the shard, and at once when the server refuses to grow the shard.
func (s *Store) appendIndex(ctx context.Context, family byte, shard int, entries map[string]int64) error {
	sk := s.shardKey(family, shard)
	lines := encodeIndex(entries)
	for attempt := 0; attempt < 3; attempt++ {
		err := s.wrote(s.c.Append(&memcache.Item{Key: sk, Value: lines}))
		if err == nil {
			s.grew(family, shard, len(lines))
			return nil
		}
		if errors.Is(err, memcache.ErrNotStored) { // no shard yet
			err = s.wrote(s.c.Add(&memcache.Item{Key: sk, Value: lines, Flags: flagIndex}))
			if err == nil {
				return nil
			}
			if errors.Is(err, memcache.ErrNotStored) {
				continue // created meanwhile, or refusing to grow
			}
		}
		if !strings.Contains(err.Error(), "SERVER_ERROR") {
			return unavailable(ctx, "index", err)
		}
		break
	}
	// The shard exists but the server refuses to grow it (the item size
	// limit): prune it, with the new members.
	return s.compactIndex(ctx, family, shard, entries)
}

// grew counts n bytes appended to a shard by this process and asks the
// indexer to compact the shard every IndexShardBytes/8 bytes.
func (s *Store) grew(family byte, shard int, n int) {
	g := &s.grown[familyIndex(family)][shard]
	if g.Add(int64(n)) < s.compactEvery {
		return
	}
	g.Store(0)
	select {
	case s.ixq <- ixReq{compact: true, family: family, shard: shard}:
	default: // the indexer is busy: a later append asks again
	}
}

func familyIndex(family byte) int {
	if family == familyBlocks {
		return 0
	}
	return 1
}

// compactIndex rewrites a shard of family with entries merged in: each
// member once, members whose until has passed pruned. When the shard would
// still outgrow IndexShardBytes it drops members that no longer exist, then
// leaves out the newest members (counted in Stats.IndexOverflow, logged).
// It retries lost compare-and-swap races, and writes nothing when there is
// nothing to change.
func (s *Store) compactIndex(ctx context.Context, family byte, shard int, entries map[string]int64) error {
	sk := s.shardKey(family, shard)
	for attempt := 0; ; attempt++ {
		it, err := s.get(ctx, sk)
		if errors.Is(err, memcache.ErrCacheMiss) {
			it = nil
		} else if err != nil {
			return unavailable(ctx, "index", err)
		}
		var m map[string]int64
		var order []string
		lines := 0
		if it != nil {
			m, order, lines = parseIndex(it.Value)
		} else {
			m = make(map[string]int64, len(entries))
		}
		dirty := it == nil || lines != len(m)
		fresh := make([]string, 0, len(entries))
		for k, u := range entries {
			if cur, ok := m[k]; !ok {
				fresh = append(fresh, k)
				m[k] = u
				dirty = true
			} else if later(u, cur) {
				m[k] = u
				dirty = true
			}
		}
		slices.Sort(fresh)
		order = append(order, fresh...)
		nowMs := time.Now().UnixMilli()
		size := 0
		for k, u := range m {
			if u != 0 && u <= nowMs {
				delete(m, k)
				dirty = true
				continue
			}
			size += lineLen(k, u)
		}
		if size > s.shardBytes {
			size = s.dropAbsent(m, size)
			dirty = true
		}
		if size > s.shardBytes {
			kept := 0
			for _, k := range order {
				u, ok := m[k]
				if !ok {
					continue
				}
				if l := lineLen(k, u); kept+l <= s.shardBytes {
					kept += l
					continue
				}
				delete(m, k)
				s.ixOverflow.Add(1)
				if s.logLimited(&s.lastFullLog) {
					s.log.Warn("memcached: index shard full, keys left out of Scan (raise IndexShards)", "shard", shard, "family", string(family), "key", k, "limit_bytes", s.shardBytes, "left_out_total", s.ixOverflow.Load())
				}
			}
		}
		if !dirty {
			return nil
		}
		item := &memcache.Item{Key: sk, Value: encodeIndex(m), Flags: flagIndex}
		if testHookBeforeWrite != nil {
			testHookBeforeWrite(s, sk)
		}
		if it == nil {
			err = s.wrote(s.c.Add(item))
		} else {
			item.CasID = it.CasID
			err = s.wrote(s.c.CompareAndSwap(item))
		}
		if err == nil {
			return nil
		}
		if !isMiss(err) {
			return unavailable(ctx, "index", err)
		}
		if attempt+1 >= maxCASAttempts {
			return fmt.Errorf("memcached: index: %w: %d compare-and-swap conflicts in a row", backend.ErrUnavailable, maxCASAttempts)
		}
		if err := backoff(ctx, attempt); err != nil {
			return unavailable(ctx, "index", err)
		}
	}
}

// dropAbsent removes from m the members that no longer exist (deleted
// keys linger in the index until their until passes) and returns the new
// size. Errors leave m as it is.
func (s *Store) dropAbsent(m map[string]int64, size int) int {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	const chunk = 100
	for len(keys) > 0 {
		part := keys[:min(chunk, len(keys))]
		keys = keys[len(part):]
		found, err := s.getMulti(context.Background(), "index", part)
		if err != nil {
			return size
		}
		nowMs := time.Now().UnixMilli()
		for _, k := range part {
			if it := found[s.key(k)]; it != nil {
				if e, err := decode(it); err == nil && e.alive(nowMs) {
					continue
				}
			}
			size -= lineLen(k, m[k])
			delete(m, k)
		}
	}
	return size
}

// enqueueIndex hands a counter index update to the indexer without waiting.
// A full queue drops it (counted, logged at most once a minute).
func (s *Store) enqueueIndex(key string, until int64) {
	select {
	case s.ixq <- ixReq{key: key, until: until}:
	default:
		s.ixDropped.Add(1)
		if s.logLimited(&s.lastDropLog) {
			s.log.Warn("memcached: counter index queue full, updates dropped (those counters may be missing from Scan)", "dropped_total", s.ixDropped.Load())
		}
	}
}

// logLimited reports whether a warning whose last time is in last may be
// logged now (at most once a minute), and records it.
func (s *Store) logLimited(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	l := last.Load()
	return (l == 0 || now-l > int64(time.Minute)) && last.CompareAndSwap(l, now)
}

// indexer writes queued counter index updates in batches, one shard write
// per shard and batch, until Close.
func (s *Store) indexer() {
	defer s.wg.Done()
	pending := map[int]map[string]int64{}
	var waiting []chan error
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	type shardID struct {
		family byte
		shard  int
	}
	compact := map[shardID]bool{}
	add := func(r ixReq) {
		if r.done != nil {
			waiting = append(waiting, r.done)
			return
		}
		if r.compact {
			compact[shardID{r.family, r.shard}] = true
			return
		}
		sh := s.shardOf(r.key)
		p := pending[sh]
		if p == nil {
			p = map[string]int64{}
			pending[sh] = p
		}
		if cur, ok := p[r.key]; !ok || later(r.until, cur) {
			p[r.key] = r.until
		}
	}
	for {
		select {
		case r := <-s.ixq:
			add(r)
		case <-retry.C:
		case <-s.stop:
			for {
				select {
				case r := <-s.ixq:
					add(r)
					continue
				default:
				}
				break
			}
			s.flushIndex(pending)
			for _, w := range waiting {
				w <- backend.ErrClosed
			}
			return
		}
		// Take everything queued meanwhile into this batch.
	drain:
		for {
			select {
			case r := <-s.ixq:
				add(r)
			default:
				break drain
			}
		}
		err := s.flushIndex(pending)
		for id := range compact {
			if cerr := s.compactIndex(context.Background(), id.family, id.shard, nil); cerr != nil {
				s.log.Debug("memcached: index compaction failed", "shard", id.shard, "family", string(id.family), "err", cerr)
			}
			delete(compact, id)
		}
		for _, w := range waiting {
			w <- err
		}
		waiting = waiting[:0]
		if len(pending) > 0 {
			retry.Reset(time.Second)
		}
	}
}

// flushIndex writes pending (shard -> member -> until) to the counter index.
// Shards that fail stay pending (bounded by IndexQueue members; the rest is
// dropped and counted). It returns the first error.
func (s *Store) flushIndex(pending map[int]map[string]int64) error {
	var first error
	total := 0
	for sh, entries := range pending {
		err := s.appendIndex(context.Background(), familyCounters, sh, entries)
		if err == nil {
			delete(pending, sh)
			continue
		}
		if first == nil {
			first = err
		}
		total += len(entries)
		if total > cap(s.ixq) {
			s.ixDropped.Add(int64(len(entries)))
			delete(pending, sh)
		}
	}
	return first
}

// flush waits until every counter index update queued before it is written.
func (s *Store) flush(ctx context.Context) error {
	if s.closed.Load() {
		return backend.ErrClosed
	}
	done := make(chan error, 1)
	select {
	case s.ixq <- ixReq{done: done}:
	case <-ctx.Done():
		return unavailable(ctx, "scan", ctx.Err())
	case <-s.stop:
		return backend.ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return unavailable(ctx, "scan", ctx.Err())
	case <-s.stop:
		return backend.ErrClosed
	}
}

// Scan implements backend.Backend from the index: it waits for this
// Store's queued counter index updates, reads every index shard of both
// families (one multi-key "gets"), takes the members with the prefix past
// the cursor in key order, and reads up to limit of them (one more
// "gets") to return those that exist. The cursor is the last key examined.
// Keys written by other processes are listed once their index update is
// written: at once for blocks, within the indexer's batch delay for
// counters.
func (s *Store) doScan(ctx context.Context, prefix, cursor string, limit int) ([]backend.Entry, string, error) {
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	if err := s.flush(ctx); err != nil {
		return nil, "", err
	}
	if err := s.acquire(ctx); err != nil {
		return nil, "", err
	}
	defer s.release()
	shardKeys := make([]string, 0, 2*s.shards)
	for _, f := range []byte{familyBlocks, familyCounters} {
		for i := 0; i < s.shards; i++ {
			shardKeys = append(shardKeys, s.shardKey(f, i))
		}
	}
	m, err := s.getMany(ctx, shardKeys)
	if err != nil {
		return nil, "", unavailable(ctx, "scan", err)
	}
	nowMs := time.Now().UnixMilli()
	seen := map[string]bool{}
	var cands []string
	for _, it := range m {
		m, _, _ := parseIndex(it.Value)
		for k, u := range m {
			if (u != 0 && u <= nowMs) || !strings.HasPrefix(k, prefix) || k <= cursor || seen[k] {
				continue
			}
			seen[k] = true
			cands = append(cands, k)
		}
	}
	slices.Sort(cands)
	next := ""
	if len(cands) > limit {
		cands = cands[:limit]
		next = cands[limit-1]
	}
	if len(cands) == 0 {
		return nil, "", nil
	}
	items, err := s.getMulti(ctx, "scan", cands)
	if err != nil {
		return nil, "", err
	}
	nowMs = time.Now().UnixMilli()
	out := make([]backend.Entry, 0, len(cands))
	for _, k := range cands {
		e, err := s.toEntry(k, items[s.key(k)], nowMs)
		if err != nil {
			return nil, "", err
		}
		if e.Found {
			out = append(out, e)
		}
	}
	return out, next, nil
}
