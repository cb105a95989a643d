package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-defender/defender/backend"
)

// TestInvalidArguments: contract violations are ErrInvalid and reach no
// server (the client points at a closed port).
func TestInvalidArguments(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	s := New(c, nil)
	ctx := context.Background()
	okReq := backend.BlockRequest{BlockKey: "b", LockoutsKey: "n", Durations: []time.Duration{time.Minute}}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"Incr/key", func() error { _, err := s.Incr(ctx, []string{"a b"}, 1, 0); return err }()},
		{"Incr/ttl", func() error { _, err := s.Incr(ctx, []string{"a"}, 1, -1); return err }()},
		{"SetBlock/key", s.SetBlock(ctx, "", nil, 0)},
		{"SetBlock/ttl", s.SetBlock(ctx, "a", nil, -time.Second)},
		{"Get/key", func() error { _, err := s.Get(ctx, []string{"a\n"}); return err }()},
		{"Delete/key", s.Delete(ctx, "ok", strings.Repeat("x", backend.MaxKeyLen+1))},
		{"Reserve/block", s.Reserve(ctx, &backend.Reservation{Blocks: []string{"a b"}})},
		{"Reserve/counter", s.Reserve(ctx, &backend.Reservation{Counters: []string{""}})},
		{"Reserve/ttl", s.Reserve(ctx, &backend.Reservation{Counters: []string{"c"}, TTL: -1})},
		{"Block/durations", func() error {
			_, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "n"})
			return err
		}()},
		{"Block/key", func() error { r := okReq; r.CounterKey = "c d"; _, err := s.Block(ctx, r); return err }()},
		{"Block/window", func() error { r := okReq; r.Window = -1; _, err := s.Block(ctx, r); return err }()},
		{"Block/duration", func() error {
			r := okReq
			r.Durations = []time.Duration{time.Minute, -time.Minute}
			_, err := s.Block(ctx, r)
			return err
		}()},
	} {
		if !errors.Is(tc.err, backend.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, tc.err)
		}
	}
	// Empty calls need no server either.
	if n, err := s.Incr(ctx, nil, 1, 0); err != nil || len(n) != 0 {
		t.Errorf("Incr(nil) = %v, %v", n, err)
	}
	if es, err := s.Get(ctx, nil); err != nil || len(es) != 0 {
		t.Errorf("Get(nil) = %v, %v", es, err)
	}
	if err := s.Delete(ctx); err != nil {
		t.Errorf("Delete() = %v", err)
	}
	if err := s.Reserve(ctx, &backend.Reservation{}); err != nil {
		t.Errorf("empty Reserve = %v", err)
	}
}

func TestReserveReply(t *testing.T) {
	for _, tc := range []struct {
		vals    []any
		nb, nc  int
		blocked int
		counts  string
		bad     bool
	}{
		{vals: []any{int64(0), int64(3), int64(4)}, nb: 1, nc: 2, blocked: -1, counts: "[3 4]"},
		{vals: []any{int64(2), "v", int64(100)}, nb: 2, nc: 2, blocked: 1},
		{vals: nil, bad: true},
		{vals: []any{"x"}, bad: true},
		{vals: []any{int64(3), "v", int64(1)}, nb: 2, bad: true},
		{vals: []any{int64(-1)}, bad: true},
		{vals: []any{int64(1), "v"}, nb: 1, bad: true},
		{vals: []any{int64(1), int64(5), int64(1)}, nb: 1, bad: true},
		{vals: []any{int64(0), int64(1)}, nc: 2, bad: true},
		{vals: []any{int64(0), "x"}, nc: 1, bad: true},
		{vals: []any{int64(0), "9007199254740993"}, nc: 1, blocked: -1, counts: "[9007199254740993]"},
		{vals: []any{int64(0), 1.5}, nc: 1, bad: true},
	} {
		blocked, _, _, counts, err := reserveReply(tc.vals, tc.nb, tc.nc)
		if tc.bad {
			if err == nil {
				t.Errorf("reserveReply(%v) accepted", tc.vals)
			}
			continue
		}
		if err != nil || blocked != tc.blocked || (tc.counts != "" && fmt.Sprint(counts) != tc.counts) {
			t.Errorf("reserveReply(%v) = %d %v %v", tc.vals, blocked, counts, err)
		}
	}
}

// TestReplyShapes feeds real server replies of the wrong shape to the
// decoders.
func TestReplyShapes(t *testing.T) {
	_, c := standalone(t)
	ctx := tctx(t)
	cmd := c.Eval(ctx, "return {1}", nil)
	if _, err := ints(cmd, 2); err == nil {
		t.Error("ints accepted 1 value for 2 keys")
	}
	cmd = c.Eval(ctx, "return 'x'", nil)
	if _, err := ints(cmd, 1); err == nil {
		t.Error("ints accepted a string")
	}
	// A block key of the wrong type makes the reserve and get scripts
	// fail: a plain error, not ErrUnavailable.
	s := openStore(t, c)
	if err := c.HSet(ctx, s.prefix+"h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, &backend.Reservation{Blocks: []string{"h"}, Counters: []string{"c"}}); err == nil || errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Reserve on a hash: %v", err)
	}
	if _, err := s.Get(ctx, []string{"h"}); err == nil || errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Get on a hash: %v", err)
	}
	if _, _, err := s.Scan(ctx, "", "", 10); err == nil {
		t.Error("Scan over a hash key: no error")
	}
	if _, err := s.Block(ctx, backend.BlockRequest{BlockKey: "b", LockoutsKey: "h", Durations: []time.Duration{time.Second}}); err == nil {
		t.Error("Block with a hash as lockout count: no error")
	}
	// Closing an owned client that the application closed already.
	o, err := Open(ctx, "redis://"+c.Options().Addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = o.Client().Close()
	if err := o.Close(); err != nil {
		t.Errorf("Close after the client was closed: %v", err)
	}
}
