package defender

import (
	"context"
	"sync/atomic"
	"time"
)

// admission bounds the password checks running at once (Config
// VerifyConcurrency, VerifyQueue, VerifyQueueTimeout).
type admission struct {
	slots   chan struct{}
	waiting atomic.Int64
	queue   int64
	timeout time.Duration
}

func newAdmission(cfg Config) *admission {
	if cfg.VerifyConcurrency <= 0 {
		return nil
	}
	q := cfg.VerifyQueue
	if q == 0 {
		q = 4 * cfg.VerifyConcurrency
	}
	return &admission{slots: make(chan struct{}, cfg.VerifyConcurrency), queue: int64(q), timeout: cfg.VerifyQueueTimeout}
}

// acquire takes a slot, waiting in the queue when there is room; it
// reports false when the check is shed, and ctx's error when ctx ended
// while waiting.
func (ad *admission) acquire(ctx context.Context) (bool, error) {
	select {
	case ad.slots <- struct{}{}:
		return true, nil
	default:
	}
	if ad.waiting.Add(1) > ad.queue || ad.timeout == 0 {
		ad.waiting.Add(-1)
		return false, nil
	}
	defer ad.waiting.Add(-1)
	t := time.NewTimer(ad.timeout)
	defer t.Stop()
	select {
	case ad.slots <- struct{}{}:
		return true, nil
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}

func (ad *admission) release() { <-ad.slots }

// Admit asks for one of the password-check slots of verification
// admission control (Config.VerifyConcurrency) before the password of an
// allowed attempt is verified, and returns the function that gives the
// slot back: call it once the check is done. When admission control is
// off, or the attempt is not allowed, it returns at once (ok reports
// whether to verify). When no slot frees within the queue's bounds, the
// attempt is shed: its reservation is refunded (a shed attempt never counts
// as a failure and never locks anyone), it is recorded and counted as
// "shed", and its Decision becomes Shed (answer 503 with Retry-After);
// when ctx ends while waiting, it is Abandoned. The middleware calls it for
// every login it lets through.
func (a *Attempt) Admit(ctx context.Context) (release func(), ok bool) {
	ad := a.d.admission
	if !a.dec.Allowed() || a.settled {
		return nop, false
	}
	if ad == nil {
		return nop, true
	}
	got, err := ad.acquire(ctx)
	if got {
		return ad.release, true
	}
	a.refund(ctx)
	if err != nil {
		a.abandon(ctx)
		return nop, false
	}
	a.refused = errShed
	a.dec = Decision{Verdict: Shed, Err: errShed, RetryAfter: time.Second}
	a.settled = true
	if a.d.metrics != nil {
		a.d.metrics.Attempt("shed")
	}
	a.record(false, false, "")
	a.release()
	return nop, false
}
