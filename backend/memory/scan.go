package memory

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/go-defender/defender/backend"
)

// Scan implements backend.Backend. It visits the shards in order and, in
// each, the matching keys in byte order: the cursor is "m<shard>:<last key
// returned>". A page locks one shard at a time, for one pass over that
// shard's keys plus a sort of the keys that match prefix and come after the
// cursor; no lock is held between pages and the store is never copied as a
// whole. Expired keys met on the way are removed. A cursor that this store
// did not produce is backend.ErrInvalid.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]backend.Entry, string, error) {
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	si, after, err := s.parseCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	now := s.now()
	var out []backend.Entry
	var hits []int32
	for ; si < len(s.shards); si++ {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("memory: %w", err)
		}
		sh := &s.shards[si]
		sh.mu.Lock()
		if sh.idx == nil {
			sh.mu.Unlock()
			return nil, "", backend.ErrClosed
		}
		hits = hits[:0]
		expired := 0
		for i := range sh.ents {
			e := &sh.ents[i]
			if e.kind == kindFree || e.key <= after || !strings.HasPrefix(e.key, prefix) {
				continue
			}
			if e.expired(now) {
				sh.remove(int32(i))
				expired++
				continue
			}
			hits = append(hits, int32(i))
		}
		slices.SortFunc(hits, func(a, b int32) int { return strings.Compare(sh.ents[a].key, sh.ents[b].key) })
		room := limit - len(out)
		more := len(hits) > room
		if more {
			hits = hits[:room]
		}
		for _, i := range hits {
			e := &sh.ents[i]
			ent := toEntry(e, now, false)
			ent.Key = e.key
			out = append(out, ent)
		}
		sh.mu.Unlock()
		if expired > 0 {
			s.expiredN.Add(uint64(expired))
		}
		if more {
			return out, makeCursor(si, out[len(out)-1].Key), nil
		}
		after = ""
		if len(out) == limit && si+1 < len(s.shards) {
			return out, makeCursor(si+1, ""), nil
		}
	}
	return out, "", nil
}

func makeCursor(shard int, after string) string {
	return "m" + strconv.Itoa(shard) + ":" + after
}

func (s *Store) parseCursor(c string) (int, string, error) {
	if c == "" {
		return 0, "", nil
	}
	num, after, ok := strings.Cut(strings.TrimPrefix(c, "m"), ":")
	si, err := strconv.Atoi(num)
	if !ok || c[0] != 'm' || err != nil || si < 0 || si >= len(s.shards) {
		return 0, "", fmt.Errorf("%w: memory: Scan cursor %q was not returned by this store", backend.ErrInvalid, c)
	}
	return si, after, nil
}
