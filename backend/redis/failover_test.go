package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/internal/testserver"
)

// flood runs reservations (the login check) from several goroutines, each
// with its own deadline, and records what the store answered.
type flood struct {
	t        *testing.T
	s        *Store
	deadline time.Duration
	stop     chan struct{}
	wg       sync.WaitGroup

	ok        atomic.Int64
	failed    atomic.Int64
	mu        sync.Mutex
	acks      []ack // acknowledged counts of Counters[0], in completion order
	slow      []time.Duration
	wrongErrs []error
}

type ack struct {
	start, end time.Time
	value      int64
}

// floodLimit is how long past its deadline a call may take: scheduling
// delay under -race on a loaded 2-core machine (seen up to ~0.6s), far
// below what a call ignoring its deadline would take (go-redis's 3s read
// timeout).
const floodLimit = time.Second

func startFlood(t *testing.T, s *Store, workers int, deadline time.Duration) *flood {
	f := &flood{t: t, s: s, deadline: deadline, stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		f.wg.Add(1)
		go f.work(w)
	}
	t.Cleanup(f.halt)
	return f
}

func (f *flood) work(w int) {
	defer f.wg.Done()
	r := backend.Reservation{
		Blocks:   []string{"defender:{user:bob}:b", fmt.Sprintf("defender:{ip:10.0.0.%d}:b", w)},
		Counters: []string{"defender:{user:bob}:f", fmt.Sprintf("defender:{ip:10.0.0.%d}:f", w)},
		TTL:      time.Hour,
	}
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), f.deadline)
		start := time.Now()
		err := f.s.Reserve(ctx, &r)
		took := time.Since(start)
		cancel()
		f.mu.Lock()
		if took > f.deadline+floodLimit {
			f.slow = append(f.slow, took)
		}
		if err == nil {
			f.ok.Add(1)
			f.acks = append(f.acks, ack{start: start, end: time.Now(), value: r.Counts[0]})
		} else {
			f.failed.Add(1)
			if !errors.Is(err, backend.ErrUnavailable) {
				f.wrongErrs = append(f.wrongErrs, err)
			}
		}
		f.mu.Unlock()
		if err != nil {
			// A failing store is retried at the pace of logins, not in a
			// tight loop.
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func (f *flood) halt() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.wg.Wait()
}

// waitOK waits until n more reservations have succeeded.
func (f *flood) waitOK(n int64, timeout time.Duration) {
	f.t.Helper()
	want := f.ok.Load() + n
	deadline := time.Now().Add(timeout)
	for f.ok.Load() < want {
		if time.Now().After(deadline) {
			f.t.Fatalf("counting did not resume: %d successes in %v (failures %d)", f.ok.Load()-want+n, timeout, f.failed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// report stops the flood and checks its invariants: every error is
// ErrUnavailable and every call returned within its deadline plus
// floodLimit.
func (f *flood) report() {
	f.t.Helper()
	f.halt()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, err := range f.wrongErrs {
		f.t.Errorf("flood: error not ErrUnavailable: %v", err)
	}
	if len(f.slow) > 0 {
		f.t.Errorf("flood: %d calls took longer than the deadline %v + %v: %v", len(f.slow), f.deadline, floodLimit, f.slow)
	}
}

// lost returns how many acknowledged increments a failover lost (a lower
// bound): the highest count acknowledged by a call that ended before cut,
// minus the lowest count acknowledged by a call that started after done,
// plus one. Values between are those of calls that overlapped the failover.
func (f *flood) lost(cut, done time.Time) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var before, after int64 = 0, -1
	for _, a := range f.acks {
		if a.end.Before(cut) {
			before = max(before, a.value)
		}
		if a.start.After(done) && (after == -1 || a.value < after) {
			after = a.value
		}
	}
	return max(before-(after-1), 0)
}

// maxAck is the highest acknowledged count.
func (f *flood) maxAck() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var m int64
	for _, a := range f.acks {
		m = max(m, a.value)
	}
	return m
}

func TestFailoverSentinel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := testserver.StartRedisSentinel(t)
	s, err := Open(ctx, "redis+sentinel://"+rs.Sentinel.Addr+"/"+testserver.SentinelMaster+"?prefix=fo:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := startFlood(t, s, 4, 100*time.Millisecond)
	f.waitOK(200, 10*time.Second)
	cut := time.Now()
	if err := rs.KillMasterAndWaitFailover(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	f.waitOK(200, 20*time.Second)
	f.report()
	lost := f.lost(cut, promoted)
	es, err := s.Get(ctx, []string{"defender:{user:bob}:f"})
	if err != nil {
		t.Fatal(err)
	}
	final := parseCount(t, es[0])
	if m := f.maxAck(); final < m || final > m+f.failed.Load() {
		t.Errorf("final count %d outside [max acknowledged %d, + %d failed calls]", final, m, f.failed.Load())
	}
	t.Logf("sentinel failover: master killed, replica promoted in %v; %d reservations ok, %d ErrUnavailable; acknowledged increments lost: %d",
		promoted.Sub(cut).Round(time.Millisecond), f.ok.Load(), f.failed.Load(), lost)
}

func TestFailoverCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc := testserver.StartRedisCluster(t, 3, 1)
	s, err := Open(ctx, "redis+cluster://"+rc.Nodes[0].Addr+","+rc.Nodes[1].Addr+"?prefix=fo:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	master, err := rc.MasterOf(ctx, "fo:defender:{user:bob}:f")
	if err != nil {
		t.Fatal(err)
	}
	replica, err := rc.ReplicaOf(ctx, master)
	if err != nil {
		t.Fatal(err)
	}
	f := startFlood(t, s, 4, 100*time.Millisecond)
	f.waitOK(200, 10*time.Second)

	// A coordinated failover (CLUSTER FAILOVER on the replica).
	cut := time.Now()
	if err := rc.Failover(ctx, replica, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	t.Logf("cluster: CLUSTER FAILOVER done in %v", done.Sub(cut).Round(time.Millisecond))
	f.waitOK(200, 20*time.Second)

	// A crash of the new master: its replica (the old master) is promoted.
	cut2 := time.Now()
	if err := rc.KillAndWaitPromotion(ctx, replica, master, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	f.waitOK(200, 20*time.Second)
	f.report()
	lost := f.lost(cut2, promoted)
	lostManual := f.lost(cut, done)
	es, err := s.Get(ctx, []string{"defender:{user:bob}:f"})
	if err != nil {
		t.Fatal(err)
	}
	final := parseCount(t, es[0])
	if m := f.maxAck(); final < m || final > m+f.failed.Load() {
		t.Errorf("final count %d outside [max acknowledged %d, + %d failed calls]", final, m, f.failed.Load())
	}
	if lostManual > 0 {
		t.Errorf("coordinated failover lost %d acknowledged increments", lostManual)
	}
	t.Logf("cluster failover: manual failover lost %d; master killed, replica promoted in %v; %d reservations ok, %d ErrUnavailable; acknowledged increments lost in the crash: %d",
		lostManual, promoted.Sub(cut2).Round(time.Millisecond), f.ok.Load(), f.failed.Load(), lost)
}

func parseCount(t *testing.T, e backend.Entry) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(string(e.Value), &n); err != nil || !e.Found {
		t.Fatalf("counter %+v: %v", e, err)
	}
	return n
}
