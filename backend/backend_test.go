package backend_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// mapStore is a minimal Backend without the optional interfaces, so that
// the package functions take their fallback paths. fail makes every call
// from the n-th on fail.
type mapStore struct {
	mu    sync.Mutex
	m     map[string][]byte
	ttl   map[string]time.Duration
	calls int
	fail  int
}

func newMap() *mapStore {
	return &mapStore{m: map[string][]byte{}, ttl: map[string]time.Duration{}, fail: -1}
}

var errDown = fmt.Errorf("down: %w", backend.ErrUnavailable)

func (s *mapStore) step() error {
	s.calls++
	if s.fail >= 0 && s.calls > s.fail {
		return errDown
	}
	return nil
}

func (s *mapStore) Incr(_ context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.step(); err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	for i, k := range keys {
		n, _ := strconv.ParseInt(string(s.m[k]), 10, 64)
		n += delta
		s.m[k], s.ttl[k], out[i] = []byte(strconv.FormatInt(n, 10)), ttl, n
	}
	return out, nil
}

func (s *mapStore) SetBlock(_ context.Context, key string, v []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.step(); err != nil {
		return err
	}
	s.m[key], s.ttl[key] = v, ttl
	return nil
}

func (s *mapStore) Get(_ context.Context, keys []string) ([]backend.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.step(); err != nil {
		return nil, err
	}
	out := make([]backend.Entry, len(keys))
	for i, k := range keys {
		v, ok := s.m[k]
		out[i] = backend.Entry{Key: k, Found: ok, Value: v, TTL: s.ttl[k]}
	}
	return out, nil
}

func (s *mapStore) Delete(_ context.Context, keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.step(); err != nil {
		return err
	}
	for _, k := range keys {
		delete(s.m, k)
	}
	return nil
}

func (s *mapStore) Scan(context.Context, string, string, int) ([]backend.Entry, string, error) {
	return nil, "", nil
}
func (s *mapStore) Close() error { return nil }

var ctx = context.Background()

func TestReserveFallback(t *testing.T) {
	s := newMap()
	r := &backend.Reservation{Blocks: []string{"b1", "b2"}, Counters: []string{"c1", "c2"}, TTL: time.Minute}
	if err := backend.Reserve(ctx, s, r); err != nil || r.Blocked != -1 || len(r.Counts) != 2 || r.Counts[0] != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	s.SetBlock(ctx, "b2", []byte("x"), time.Hour)
	if err := backend.Reserve(ctx, s, r); err != nil || r.Blocked != 1 || string(r.Block.Value) != "x" || len(r.Counts) != 0 {
		t.Fatalf("%+v %v", r, err)
	}
	if string(s.m["c1"]) != "1" {
		t.Fatalf("a blocked reservation left its increment: c1=%s", s.m["c1"])
	}
	empty := &backend.Reservation{}
	if err := backend.Reserve(ctx, s, empty); err != nil || empty.Blocked != -1 {
		t.Fatal(err)
	}
	for fail := 0; fail < 3; fail++ {
		s.calls, s.fail = 0, fail
		if err := backend.Reserve(ctx, s, r); !errors.Is(err, errDown) {
			t.Errorf("fail at call %d: %v", fail, err)
		}
	}
}

func TestBlockFallback(t *testing.T) {
	s := newMap()
	req := backend.BlockRequest{BlockKey: "b", Value: []byte("v"), CounterKey: "c", LockoutsKey: "n",
		Window: time.Hour, Durations: []time.Duration{time.Minute, 0}}
	s.Incr(ctx, []string{"c"}, 4, time.Minute)
	res, err := backend.Block(ctx, s, req)
	if err != nil || res.Lockouts != 1 || res.Duration != time.Minute || s.ttl["b"] != time.Minute || s.m["c"] != nil || s.ttl["n"] != time.Hour {
		t.Fatalf("%+v %v %v", res, err, s.m)
	}
	res, _ = backend.Block(ctx, s, req)
	if res.Lockouts != 2 || res.Duration != 0 {
		t.Fatalf("second lockout %+v, want permanent", res)
	}
	if _, err := backend.Block(ctx, s, backend.BlockRequest{BlockKey: "b"}); !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("empty durations: %v", err)
	}
	req.CounterKey = ""
	if _, err := backend.Block(ctx, s, req); err != nil {
		t.Fatal(err)
	}
	for fail := 0; fail < 3; fail++ {
		s.calls, s.fail = 0, fail
		req.CounterKey = "c"
		if _, err := backend.Block(ctx, s, req); !errors.Is(err, errDown) {
			t.Errorf("fail at call %d: %v", fail, err)
		}
	}
}

// TestBlockFallbackIfAbsent: the fallback's conditional block reads the
// block first and changes nothing when one is there.
func TestBlockFallbackIfAbsent(t *testing.T) {
	s := newMap()
	req := backend.BlockRequest{BlockKey: "b", Value: []byte("v"), CounterKey: "c", LockoutsKey: "n",
		Window: time.Hour, Durations: []time.Duration{time.Minute}, IfAbsent: true}
	res, err := backend.Block(ctx, s, req)
	if err != nil || res.Existing || res.Lockouts != 1 {
		t.Fatalf("no block yet: %+v %v", res, err)
	}
	s.Incr(ctx, []string{"c"}, 5, time.Minute)
	res, err = backend.Block(ctx, s, req)
	if err != nil || !res.Existing || res.Duration != time.Minute || string(s.m["c"]) != "5" {
		t.Fatalf("over a block: %+v %v; counter %q", res, err, s.m["c"])
	}
	s.calls, s.fail = 0, 0
	if _, err := backend.Block(ctx, s, req); !errors.Is(err, errDown) {
		t.Fatalf("a failing read: %v", err)
	}
}

// borrower is a Backend that says it borrows keys.
type borrower struct{ *mapStore }

func (borrower) BorrowsKeys() bool { return true }

func TestBorrowsKeys(t *testing.T) {
	if backend.BorrowsKeys(newMap()) || !backend.BorrowsKeys(borrower{newMap()}) {
		t.Fatal("BorrowsKeys")
	}
}

func TestEscalate(t *testing.T) {
	ds := []time.Duration{1, 2, 3}
	for n, want := range map[int64]time.Duration{-1: 1, 0: 1, 1: 1, 2: 2, 3: 3, 4: 3, 100: 3} {
		if got := backend.Escalate(ds, n); got != want {
			t.Errorf("Escalate(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestSchemes(t *testing.T) {
	if !strings.Contains(strings.Join(backend.Schemes(), ","), "testscheme") {
		t.Fatal(backend.Schemes())
	}
}

func TestBlockRequestValidate(t *testing.T) {
	ok := backend.BlockRequest{BlockKey: "b", LockoutsKey: "n", Durations: []time.Duration{time.Minute}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*backend.BlockRequest){
		"no durations":      func(r *backend.BlockRequest) { r.Durations = nil },
		"negative window":   func(r *backend.BlockRequest) { r.Window = -1 },
		"negative duration": func(r *backend.BlockRequest) { r.Durations = []time.Duration{time.Minute, -1} },
		"bad block key":     func(r *backend.BlockRequest) { r.BlockKey = "a b" },
		"empty lockouts":    func(r *backend.BlockRequest) { r.LockoutsKey = "" },
		"bad counter key":   func(r *backend.BlockRequest) { r.CounterKey = "x\n" },
	} {
		r := ok
		mut(&r)
		if err := r.Validate(); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := backend.Block(ctx, newMap(), r); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("Block with %s: %v", name, err)
		}
	}
}

func TestReservationValidate(t *testing.T) {
	ok := backend.Reservation{Blocks: []string{"b"}, Counters: []string{"c"}, TTL: time.Minute}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*backend.Reservation){
		"negative ttl": func(r *backend.Reservation) { r.TTL = -1 },
		"bad block":    func(r *backend.Reservation) { r.Blocks = []string{""} },
		"bad counter":  func(r *backend.Reservation) { r.Counters = []string{"a b"} },
	} {
		r := ok
		mut(&r)
		if err := r.Validate(); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
