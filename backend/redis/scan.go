package redis

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
)

// DefaultScanLimit is the page size of Scan when limit <= 0.
const DefaultScanLimit = 100

// maxScanCalls bounds the SCAN commands one Scan page issues while looking
// for matching keys in a sparse keyspace; the page may then be empty while
// more remain.
const maxScanCalls = 32

// shard is one server holding part of the keyspace: every master of a
// cluster, every shard of a Ring, or the one server otherwise. id orders the
// shards and names one in a cursor: a cluster master is named by its lowest
// hash slot (which survives a failover), a Ring shard by its address.
type shard struct {
	id string
	c  interface {
		Scan(ctx context.Context, cursor uint64, match string, count int64) *goredis.ScanCmd
	}
}

// cursor is Scan's position: the shard, the SCAN cursor of the batch being
// read, and the last key (in sorted order) returned from that batch, when the
// batch did not fit in a page.
type cursor struct {
	shard string
	scan  uint64
	count int64
	last  string
}

func (c cursor) encode() string {
	raw := c.shard + "\n" + strconv.FormatUint(c.scan, 10) + "\n" + strconv.FormatInt(c.count, 10) + "\n" + c.last
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: bad scan cursor %q", backend.ErrInvalid, s)
	}
	f := strings.SplitN(string(b), "\n", 4)
	if len(f) != 4 {
		return cursor{}, fmt.Errorf("%w: bad scan cursor %q", backend.ErrInvalid, s)
	}
	c := cursor{shard: f[0], last: f[3]}
	if c.scan, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return cursor{}, fmt.Errorf("%w: bad scan cursor %q", backend.ErrInvalid, s)
	}
	if c.count, err = strconv.ParseInt(f[2], 10, 64); err != nil || c.count <= 0 {
		return cursor{}, fmt.Errorf("%w: bad scan cursor %q", backend.ErrInvalid, s)
	}
	return c, nil
}

// escapeGlob makes s match itself literally in a SCAN MATCH pattern.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Scan implements backend.Backend with SCAN MATCH (the prefix escaped, never
// KEYS) on each shard in turn: every master of a cluster (the cursor names
// the master by its lowest slot, so a failover to its replica continues
// there), or the one server. A page holds at most limit keys: SCAN batches
// are sorted and a batch that does not fit is resumed after its last
// returned key. Values and TTLs are then read with the Get script.
func (s *Store) Scan(ctx context.Context, prefix, cur string, limit int) ([]backend.Entry, string, error) {
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	var c cursor
	if cur != "" {
		var err error
		if c, err = decodeCursor(cur); err != nil {
			return nil, "", err
		}
	}
	shards, err := s.shards(ctx)
	if err != nil {
		return nil, "", s.wrap("scan", err)
	}
	// The shard to continue: the cursor's, or the next one after it (when
	// the cursor's shard is gone, for example after resharding).
	si := 0
	if cur != "" {
		si = sort.Search(len(shards), func(i int) bool { return lessID(c.shard, shards[i].id) || c.shard == shards[i].id })
		if si < len(shards) && shards[si].id != c.shard {
			c.scan, c.last = 0, ""
		}
	} else {
		c.count = int64(limit)
	}
	match := escapeGlob(s.prefix+prefix) + "*"
	var keys []string
	next := ""
	for calls := 0; ; calls++ {
		if si >= len(shards) {
			next = ""
			break
		}
		if calls == maxScanCalls || len(keys) == limit {
			c.shard = shards[si].id
			next = c.encode()
			break
		}
		batch, after, err := shards[si].c.Scan(ctx, c.scan, match, c.count).Result()
		if err != nil {
			return nil, "", s.wrap("scan", err)
		}
		sort.Strings(batch)
		if c.last != "" {
			i := sort.SearchStrings(batch, c.last)
			for i < len(batch) && batch[i] <= c.last {
				i++
			}
			batch = batch[i:]
		}
		batch = dedupSorted(batch)
		if room := limit - len(keys); len(batch) > room {
			keys = append(keys, batch[:room]...)
			c.shard, c.last = shards[si].id, batch[room-1]
			next = c.encode()
			break
		}
		keys = append(keys, batch...)
		c.last = ""
		c.scan = after
		if after == 0 {
			si++
			c.scan = 0
		}
	}
	if len(keys) == 0 {
		return nil, next, nil
	}
	plain := make([]string, len(keys))
	for i, k := range keys {
		plain[i] = k[len(s.prefix):]
	}
	entries := make([]backend.Entry, len(plain))
	if err := s.get(ctx, plain, entries); err != nil {
		return nil, "", s.wrap("scan", err)
	}
	live := entries[:0]
	for _, e := range entries {
		if e.Found {
			live = append(live, e)
		}
	}
	return live, next, nil
}

func dedupSorted(b []string) []string {
	if len(b) < 2 {
		return b
	}
	out := b[:1]
	for _, k := range b[1:] {
		if k != out[len(out)-1] {
			out = append(out, k)
		}
	}
	return out
}

// lessID orders shard ids: numbers (cluster slots) numerically, others as
// strings.
func lessID(a, b string) bool {
	na, ea := strconv.Atoi(a)
	nb, eb := strconv.Atoi(b)
	if ea == nil && eb == nil {
		return na < nb
	}
	return a < b
}

// shards lists the servers to scan, ordered by id.
func (s *Store) shards(ctx context.Context) ([]shard, error) {
	var out []shard
	switch c := s.c.(type) {
	case *goredis.ClusterClient:
		// A failover cluster client (Sentinel with RouteByLatency or
		// RouteRandomly) talks to servers without cluster support: CLUSTER
		// SLOTS fails and its master is named by its address.
		ranges, err := c.ClusterSlots(ctx).Result()
		var re goredis.Error
		if err != nil && !errors.As(err, &re) {
			return nil, err
		}
		low := map[string]int{}
		for _, r := range ranges {
			if len(r.Nodes) == 0 {
				continue
			}
			a := r.Nodes[0].Addr
			if v, ok := low[a]; !ok || r.Start < v {
				low[a] = r.Start
			}
		}
		var mu sync.Mutex
		clients := map[string]*goredis.Client{}
		if err := c.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
			mu.Lock()
			clients[m.Options().Addr] = m
			mu.Unlock()
			return nil
		}); err != nil {
			return nil, err
		}
		for a := range low {
			if _, ok := clients[a]; !ok {
				c.ReloadState(ctx)
				return nil, errors.New("cluster topology is changing: master " + a + " not known to the client yet")
			}
		}
		for a, m := range clients {
			if slot, ok := low[a]; ok {
				out = append(out, shard{id: strconv.Itoa(slot), c: m})
			} else if len(low) == 0 {
				out = append(out, shard{id: a, c: m})
			}
			// A cluster master without slots holds no keys.
		}
	case *goredis.Ring:
		var mu sync.Mutex
		if err := c.ForEachShard(ctx, func(ctx context.Context, sc *goredis.Client) error {
			mu.Lock()
			out = append(out, shard{id: sc.Options().Addr, c: sc})
			mu.Unlock()
			return nil
		}); err != nil {
			return nil, err
		}
	default:
		out = append(out, shard{id: "0", c: s.c})
	}
	sort.Slice(out, func(i, j int) bool { return lessID(out[i].id, out[j].id) })
	return out, nil
}
