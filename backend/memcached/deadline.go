package memcached

import (
	"context"
	"time"

	"github.com/go-defender/defender/backend"
)

// gomemcache takes no context: each network operation is bounded only by
// the client's Timeout, and one call of the Store may take several round
// trips. So that a slow (not dead) server never holds a login past its
// deadline, every method runs its work on a goroutine and returns
// ErrUnavailable (wrapping the context's error) when the context ends
// first. The abandoned work finishes in the background within the client's
// Timeout per round trip, on copies of the caller's slices, and counts
// against MaxInFlight; Close waits for it. Like a lost reply, an abandoned
// write may or may not have happened: it is never retried.

// bounded runs f under ctx's deadline (directly when ctx has none).
func (s *Store) bounded(ctx context.Context, op string, f func() error) error {
	if _, ok := ctx.Deadline(); !ok && ctx.Done() == nil {
		return f()
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	done := make(chan error, 1)
	s.calls.Add(1)
	go func() {
		defer s.calls.Done()
		done <- f()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return unavailable(ctx, op, ctx.Err())
	}
}

func cloneStrings(in []string) []string { return append([]string(nil), in...) }

// Get implements backend.Backend: one round trip for any number of keys.
func (s *Store) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	keys = cloneStrings(keys)
	var out []backend.Entry
	err := s.bounded(ctx, "get", func() (err error) { out, err = s.doGet(ctx, keys); return })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetBlock implements backend.Backend: the block and its index entry, in
// parallel.
func (s *Store) SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	value = append([]byte(nil), value...)
	return s.bounded(ctx, "set block", func() error { return s.doSetBlock(ctx, key, value, ttl) })
}

// Delete implements backend.Backend.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	keys = cloneStrings(keys)
	return s.bounded(ctx, "delete", func() error { return s.doDelete(ctx, keys...) })
}

// Incr implements backend.Backend with compare-and-swap (see the package
// documentation).
func (s *Store) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	keys = cloneStrings(keys)
	var out []int64
	err := s.bounded(ctx, "incr", func() (err error) { out, err = s.doIncr(ctx, keys, delta, ttl); return })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Reserve implements backend.Reserver (see the package documentation).
func (s *Store) Reserve(ctx context.Context, r *backend.Reservation) error {
	rr := backend.Reservation{Blocks: cloneStrings(r.Blocks), Counters: cloneStrings(r.Counters), TTL: r.TTL}
	if err := s.bounded(ctx, "reserve", func() error { return s.doReserve(ctx, &rr) }); err != nil {
		return err
	}
	r.Blocked, r.Block = rr.Blocked, rr.Block
	r.Counts = append(r.Counts[:0], rr.Counts...)
	return nil
}

// Block implements backend.Blocker (see the package documentation).
func (s *Store) Block(ctx context.Context, req backend.BlockRequest) (backend.BlockResult, error) {
	req.Value = append([]byte(nil), req.Value...)
	req.Durations = append([]time.Duration(nil), req.Durations...)
	var res backend.BlockResult
	err := s.bounded(ctx, "block", func() (err error) { res, err = s.doBlock(ctx, req); return })
	return res, err
}

// Scan implements backend.Backend through the index (see the package
// documentation).
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]backend.Entry, string, error) {
	var out []backend.Entry
	var next string
	err := s.bounded(ctx, "scan", func() (err error) { out, next, err = s.doScan(ctx, prefix, cursor, limit); return })
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}
