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

// result carries what an abandoned or finished call produced.
type result[T any] struct {
	v   T
	err error
}

// bounded runs f under ctx's deadline (directly when ctx has none). Its
// results travel on a channel, so that a call abandoned at the deadline
// never writes anything the caller can still see.
func bounded[T any](s *Store, ctx context.Context, op string, f func() (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok && ctx.Done() == nil {
		return f()
	}
	var zero T
	if err := s.check(ctx); err != nil {
		return zero, err
	}
	done := make(chan result[T], 1)
	s.calls.Add(1)
	go func() {
		defer s.calls.Done()
		v, err := f()
		done <- result[T]{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, unavailable(ctx, op, ctx.Err())
	}
}

func cloneStrings(in []string) []string { return append([]string(nil), in...) }

// Get implements backend.Backend: one round trip for any number of keys.
func (s *Store) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	keys = cloneStrings(keys)
	return bounded(s, ctx, "get", func() ([]backend.Entry, error) { return s.doGet(ctx, keys) })
}

// SetBlock implements backend.Backend: the block and its index entry, in
// parallel.
func (s *Store) SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	value = append([]byte(nil), value...)
	_, err := bounded(s, ctx, "set block", func() (struct{}, error) { return struct{}{}, s.doSetBlock(ctx, key, value, ttl) })
	return err
}

// Delete implements backend.Backend.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	keys = cloneStrings(keys)
	_, err := bounded(s, ctx, "delete", func() (struct{}, error) { return struct{}{}, s.doDelete(ctx, keys...) })
	return err
}

// Incr implements backend.Backend with compare-and-swap (see the package
// documentation).
func (s *Store) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	keys = cloneStrings(keys)
	return bounded(s, ctx, "incr", func() ([]int64, error) { return s.doIncr(ctx, keys, delta, ttl) })
}

// Reserve implements backend.Reserver (see the package documentation).
func (s *Store) Reserve(ctx context.Context, r *backend.Reservation) error {
	in := backend.Reservation{Blocks: cloneStrings(r.Blocks), Counters: cloneStrings(r.Counters), TTL: r.TTL}
	rr, err := bounded(s, ctx, "reserve", func() (backend.Reservation, error) {
		rr := in
		err := s.doReserve(ctx, &rr)
		return rr, err
	})
	if err != nil {
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
	return bounded(s, ctx, "block", func() (backend.BlockResult, error) { return s.doBlock(ctx, req) })
}

// scanPage is one page of Scan.
type scanPage struct {
	entries []backend.Entry
	next    string
}

// Scan implements backend.Backend through the index (see the package
// documentation).
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]backend.Entry, string, error) {
	p, err := bounded(s, ctx, "scan", func() (scanPage, error) {
		e, n, err := s.doScan(ctx, prefix, cursor, limit)
		return scanPage{e, n}, err
	})
	if err != nil {
		return nil, "", err
	}
	return p.entries, p.next, nil
}
