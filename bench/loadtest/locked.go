package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"time"
)

// The locked flood's one identity: every request of the flood is this
// username from this address, blocked before the flood starts.
const (
	lockedUser = "mallory"
	lockedIP   = "10.77.0.1"
)

// lockedReq is the request of the locked flood.
func lockedReq(int64) request {
	return request{username: lockedUser, password: "wrong-guess", ip: lockedIP, want: expectFailure}
}

// block blocks the locked flood's username and address with
// failureLimit+1 failures and checks that the next attempt is answered
// locked.
func block(ctx context.Context, c *client) error {
	for i := range failureLimit + 1 {
		if r := c.do(ctx, lockedReq(0)); r.o == outError {
			return fmt.Errorf("failure %d of %d that block %s from %s: %v", i+1, failureLimit+1, lockedUser, lockedIP, r.err)
		}
	}
	r := c.do(ctx, lockedReq(0))
	if r.o != outLocked {
		msg := fmt.Sprintf("after %d failures, %s from %s is not blocked: the next attempt was answered %s (HTTP %d", failureLimit+1, lockedUser, lockedIP, r.o, r.status)
		if r.reason != "" {
			msg += ", " + reasonHeader + ": " + r.reason
		}
		if r.err != nil {
			msg += ", " + r.err.Error()
		}
		return errors.New(msg + ")")
	}
	return nil
}

// AuditGrowth is what the audit log grew by during a locked flood.
type AuditGrowth struct {
	// Bytes is the growth of the site's audit files (the JSON-lines file,
	// its rotated generation and the spool) from the end of the blocking
	// to the site's exit.
	Bytes int64 `json:"bytes"`
	// PerRequest is Bytes divided by the flood's requests.
	PerRequest float64 `json:"bytes_per_request"`
}

// lockedFlood measures the locked flood on site s, which it stops: it
// blocks the flood's identity, floods it with workers clients for d (or
// maxReq requests), stops the site (which flushes its audit log) and,
// when auditDir is not empty, measures the growth of the files under it.
func lockedFlood(ctx context.Context, s *server, auditDir string, workers int, d time.Duration, maxReq int64) (Result, *AuditGrowth, error) {
	defer s.stop()
	c := newClient(s.base, max(workers, 1))
	defer c.close()
	if err := block(ctx, c); err != nil {
		return Result{}, nil, err
	}
	var before int64
	if auditDir != "" {
		var err error
		if before, err = settledSize(ctx, auditDir); err != nil {
			return Result{}, nil, err
		}
	}
	res := saturate(ctx, c, lockedReq, workers, d, maxReq)
	c.close()
	s.stop()
	if auditDir == "" {
		return res, nil, nil
	}
	after, err := dirSize(auditDir)
	if err != nil {
		return res, nil, err
	}
	g := &AuditGrowth{Bytes: after - before}
	if res.Requests > 0 {
		g.PerRequest = float64(g.Bytes) / float64(res.Requests)
	}
	return res, g, nil
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a spool segment deleted while we walk
			}
			return err
		}
		if e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// settledSize waits until the size of the files under dir has not changed
// for 250ms (the audit writer is asynchronous: the records of the
// blocking reach the file shortly after their answers), at most 5s, and
// returns it.
func settledSize(ctx context.Context, dir string) (int64, error) {
	const step, still = 50 * time.Millisecond, 5
	last, err := dirSize(dir)
	if err != nil {
		return 0, err
	}
	same := 0
	deadline := time.Now().Add(5 * time.Second)
	t := time.NewTicker(step)
	defer t.Stop()
	for same < still && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
		n, err := dirSize(dir)
		if err != nil {
			return 0, err
		}
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last, nil
}

// bareLocked is the bare handler: every request is answered 429 with a
// Retry-After and no body.
func bareLocked(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Retry-After", "300")
	w.WriteHeader(http.StatusTooManyRequests)
}

// runBare serves the bare handler until ctx ends: bare-server --addr ADDR.
// It is the locked flood's baseline: the fastest answer a Go net/http
// site can give a locked client.
func runBare(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bare-server", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", *addr, err)
	}
	fmt.Fprintf(stdout, "bare 429 handler listening on http://%s\n", ln.Addr())
	return serve(ctx, ln, http.HandlerFunc(bareLocked))
}

// serve serves h on ln until ctx ends, then shuts the server down (at
// most 5 seconds for the requests in flight).
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
