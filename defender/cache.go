package defender

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/go-defender/defender/backend"
)

// The block near-cache. Over a network store (anything but an in-process
// one), a Defender remembers the blocks it has seen, so that a request from
// a client it knows is blocked is answered without a store call: under a
// brute-force flood, nearly every request is one. The cache is
// github.com/dgraph-io/ristretto/v2, bounded to blockCacheEntries entries;
// its admission is lossy, which is harmless here: a block it did not keep
// is only asked of the store again.
//
// Staleness. An entry never outlives the block's remaining TTL. An unblock
// through this Defender drops every entry at once. An unblock through
// another process is heard at once when the store carries announcements
// (backend.Notifier: Redis), and an entry then lives up to
// notifiedCacheTTL; otherwise an entry lives at most Config.BlockCacheTTL
// (DEFENDER_BLOCK_CACHE_TTL), the bound on how long another process may
// keep refusing a user after an unblock.
const (
	blockCacheEntries = 1 << 16
	notifiedCacheTTL  = time.Minute
)

// cachedBlock is what the cache keeps of a block.
type cachedBlock struct {
	until int64 // store clock (UnixNano) when the block ends; 0 = permanent
	gen   uint64
	kind  Kind
}

// blockCache wraps the ristretto cache with the generation that
// invalidations bump: an entry from an older generation is a miss, which
// closes the race of a lookup that read a block from the store before an
// unblock and fills the cache after it.
type blockCache struct {
	c      *ristretto.Cache[string, cachedBlock]
	gen    atomic.Uint64
	ttl    time.Duration // lifetime bound without announcements
	heard  atomic.Bool   // the store's announcements are live
	stopNT func()
}

func newBlockCache(ttl time.Duration) (*blockCache, error) {
	c, err := ristretto.NewCache(&ristretto.Config[string, cachedBlock]{
		NumCounters: 10 * blockCacheEntries,
		MaxCost:     blockCacheEntries,
		BufferItems: 64,
	})
	if err != nil {
		return nil, err
	}
	return &blockCache{c: c, ttl: ttl}, nil
}

// startCache creates the near-cache for a network store and subscribes to
// its announcements when it makes them.
func (d *Defender) startCache() error {
	if d.immediate || d.cfg.BlockCacheTTL <= 0 {
		return nil
	}
	bc, err := newBlockCache(d.cfg.BlockCacheTTL)
	if err != nil {
		return err
	}
	d.cache = bc
	if n, ok := d.store.(backend.Notifier); ok {
		stop, err := n.Subscribe(func(key string) {
			bc.gen.Add(1)
			bc.c.Del(key)
		}, func() {
			bc.gen.Add(1)
			bc.heard.Store(true)
		})
		if err != nil {
			d.log.Warn("defender: no announcements from the store; cached blocks live up to DEFENDER_BLOCK_CACHE_TTL", "err", err)
		} else {
			bc.stopNT = stop
		}
	}
	return nil
}

func (d *Defender) stopCache() {
	if d.cache == nil {
		return
	}
	if d.cache.stopNT != nil {
		d.cache.stopNT()
	}
	d.cache.c.Close()
}

// cached returns the cached block under key, if any is current.
func (d *Defender) cached(key string) (cachedBlock, bool) {
	e, ok := d.cache.c.Get(key)
	if !ok || e.gen != d.cache.gen.Load() {
		return cachedBlock{}, false
	}
	if e.until != 0 && d.now().UnixNano() >= e.until {
		return cachedBlock{}, false
	}
	return e, true
}

// remember caches a block seen in the store: remaining is its TTL (0 =
// permanent), gen the generation read before the store was asked.
func (d *Defender) remember(key string, kind Kind, remaining time.Duration, gen uint64) {
	if d.cache == nil {
		return
	}
	life := d.cache.ttl
	if d.cache.heard.Load() {
		life = max(life, notifiedCacheTTL)
	}
	e := cachedBlock{gen: gen, kind: kind}
	if remaining > 0 {
		e.until = d.now().Add(remaining).UnixNano()
		life = min(life, remaining)
	}
	d.cache.c.SetWithTTL(key, e, 1, life)
}

// forget drops key from this process's cache (and every other entry, by
// the generation) and announces it to the other processes.
func (d *Defender) forget(ctx context.Context, key string) {
	if d.cache == nil {
		return
	}
	d.cache.gen.Add(1)
	d.cache.c.Del(key)
	if n, ok := d.store.(backend.Notifier); ok {
		if err := n.Notify(ctx, key); err != nil {
			d.log.Warn("defender: unblock not announced to the other processes; their cached block lives up to DEFENDER_BLOCK_CACHE_TTL",
				"err", err)
		}
	}
}

// cacheGen is the generation to remember blocks under, read before the
// store is asked.
func (d *Defender) cacheGen() uint64 {
	if d.cache == nil {
		return 0
	}
	return d.cache.gen.Load()
}

// fromCache answers keys (block keys of ids, in order) from the cache: the
// decision for the first one cached as blocked.
func (d *Defender) fromCache(keys []string, ids []identity) (Decision, bool) {
	if d.cache == nil {
		return Decision{}, false
	}
	for i, k := range keys {
		if e, ok := d.cached(k); ok {
			if cm, ok := d.metrics.(CacheMetrics); ok {
				cm.BlockCacheAnswer(ids[i].kind)
			}
			dec := Decision{Verdict: Locked, Kind: ids[i].kind, Permanent: e.until == 0}
			if e.until != 0 {
				dec.RetryAfter = time.Duration(e.until - d.now().UnixNano())
			}
			return dec, true
		}
	}
	return Decision{}, false
}

// CacheMetrics is an optional extension of Metrics: a Metrics that
// implements it also counts the locked requests answered by the block
// near-cache, without a store call.
type CacheMetrics interface {
	BlockCacheAnswer(kind Kind)
}
