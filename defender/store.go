package defender

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-defender/defender/backend"
)

// How the engine tells a slow store from a busy process, and a failed
// store from a working one:
//
//   - Deadline. A store call gets StoreTimeout of the store's own time plus
//     the time this process currently needs to schedule a goroutine. When
//     the CPU is saturated (password hashing under attack), a goroutine
//     whose reply has arrived may wait tens or hundreds of milliseconds to
//     run; that wait is not the store's. The scheduler's own measure of it
//     (runtime/metrics /sched/latencies:seconds) is read every
//     schedSampleEvery; the allowance is schedFactor times the 99th
//     percentile of the last samples, at most maxSchedAllowance. On an idle
//     machine it is about zero.
//   - Circuit breaker. An outage error (not an invalid argument, not a full
//     store) makes the prober probe the store at once; when that probe is
//     not answered either, the breaker opens: later calls fail at once,
//     without waiting for a deadline, and the fail mode answers them. The
//     prober then starts a probe round every probeEvery (each bounded by
//     the deadline) and closes the breaker when two probes are answered.
//   - Settles that failed. A success's reset that could not be made (store
//     down, breaker open) is retried in the background until it is made or
//     the counters it resets have expired, so that reservations never add
//     up to a lockout of a user who never failed.
const (
	schedSampleEvery  = 10 * time.Millisecond
	schedWindow       = 25 // samples the allowance looks back on
	schedFactor       = 8
	maxSchedAllowance = 2 * time.Second
	probeEvery        = 100 * time.Millisecond
	maxProbesPerRound = 128 // a dead pooled connection fails one probe each
	maxProbesInFlight = 8
	retryQueue        = 4096
	maxRetryBackoff   = time.Second
)

// errCircuitOpen is the error of a store call not made because the breaker
// is open.
var errCircuitOpen = fmt.Errorf("defender: store call not made: the store failed and has not answered a probe since: %w", backend.ErrUnavailable)

// isOutage reports whether a store error means the store is failing (as
// opposed to a refused argument or a full store, which it answered).
func isOutage(err error) bool {
	return err != nil && !errors.Is(err, backend.ErrInvalid) && !errors.Is(err, backend.ErrFull)
}

// guard holds the engine's protections around a network store: the
// scheduling allowance, the breaker and its prober, and the settle retries.
type guard struct {
	allowance atomic.Int64 // nanoseconds added to StoreTimeout
	open      atomic.Bool  // the breaker
	suspect   atomic.Bool  // a failure was seen: the prober is confirming it
	stop      chan struct{}
	wake      chan struct{} // starts the prober
	retries   chan retry
	resets    chan *resetJob
	pending   sync.Map // counter key -> *resetJob not yet made
	wg        sync.WaitGroup
}

// resetJob is a success's reset (deletes of counters) made in the
// background, off the caller's path.
type resetJob struct {
	keys []string
	done chan struct{}
}

// retry is a settle to make again: delete keys, or refund them.
type retry struct {
	del, refund []string
	until       time.Time // the counters expire by then: no need after
}

// startGuard starts the guard's goroutines (network stores only).
func (d *Defender) startGuard() {
	g := &d.guard
	g.stop = make(chan struct{})
	g.wake = make(chan struct{}, 1)
	g.retries = make(chan retry, retryQueue)
	g.resets = make(chan *resetJob, retryQueue)
	g.wg.Add(4)
	go d.sampleScheduler()
	go d.prober()
	go d.retrier()
	go d.resetter()
}

// stopGuard stops them and waits.
func (d *Defender) stopGuard() {
	if d.guard.stop == nil {
		return
	}
	close(d.guard.stop)
	d.guard.wg.Wait()
	if n := len(d.guard.retries); n > 0 {
		d.log.Warn("defender: closing with success resets not yet made; their counters expire on their own", "count", n)
	}
}

// deadline is the budget of one store call.
func (d *Defender) deadline() time.Duration {
	return d.cfg.StoreTimeout + time.Duration(d.guard.allowance.Load())
}

// storeCtx returns the context of a store call made for a caller whose
// context is ctx: bounded by deadline, and detached from ctx's
// cancellation and deadline. A store call is never abandoned half-way
// because the client went away: its effect must be known (to refund a
// reservation, or to settle a verified attempt), and a cancelled call must
// never be mistaken for a store outage. The engine looks at ctx before and
// after the call instead (see Abandoned).
func (d *Defender) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.immediate {
		return context.Background(), nop
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d.deadline())
}

func nop() {}

// call makes one call to the shared store through the guard: it fails at
// once while the breaker is open, is bounded by the deadline otherwise
// (detached from ctx, see storeCtx), and its outcome is observed.
func (d *Defender) call(ctx context.Context, op string, start time.Time, fn func(context.Context) error) error {
	if d.guard.open.Load() {
		return errCircuitOpen
	}
	sctx, cancel := d.storeCtx(ctx)
	defer cancel()
	return d.callIn(sctx, op, start, fn)
}

// callIn is call within a store context already made (one deadline shared
// by several calls).
func (d *Defender) callIn(sctx context.Context, op string, start time.Time, fn func(context.Context) error) error {
	if d.guard.open.Load() {
		return errCircuitOpen
	}
	gen := d.health.Load()
	err := fn(sctx)
	if d.observing(gen, err) {
		d.observe(op, start, gen, err)
	}
	return err
}

// observe records the outcome of a call to the shared store that started
// at start, when the health generation was gen.
func (d *Defender) observe(op string, start time.Time, gen uint64, err error) {
	if d.metrics != nil {
		d.metrics.StoreCall(op, d.now().Sub(start), err)
	}
	if !isOutage(err) {
		if gen%2 == 1 && d.health.CompareAndSwap(gen, gen+1) {
			d.log.Info("defender: store recovered")
			d.emit(Event{Kind: EventStoreRecovered})
		}
		return
	}
	if gen != d.health.Load() {
		// A call that began before the last transition (before the
		// outage was seen, or before the recovery): stale news.
		return
	}
	if gen%2 == 0 && d.health.CompareAndSwap(gen, gen+1) {
		d.log.Error("defender: store failed", "op", op, "err", err, "fail_mode", string(d.cfg.FailMode))
		d.emit(Event{Kind: EventStoreFailed, Err: err})
	}
	if !d.immediate && !d.guard.open.Load() && d.guard.suspect.CompareAndSwap(false, true) {
		// Confirm before failing fast: the prober asks the store at
		// once, and opens the breaker only if it does not answer.
		select {
		case d.guard.wake <- struct{}{}:
		default:
		}
	}
}

// observing reports whether a call's outcome must be observed: always with
// metrics, on errors, and while the store is failing (to see it recover).
func (d *Defender) observing(gen uint64, err error) bool {
	return d.metrics != nil || err != nil || gen%2 == 1
}

// prober confirms a failure before the breaker opens, and closes the
// breaker once the store answers again. A failure is confirmed by one probe
// round: a store that answers it was only slow once (or the process was),
// and calls go on without the breaker. While the breaker is open the prober
// starts a probe round every probeEvery, without waiting for rounds still in
// flight (up to maxProbesInFlight): a round against a store that does not
// answer lasts a deadline, and the store's return must be noticed within a
// probe interval, not a deadline.
func (d *Defender) prober() {
	defer d.guard.wg.Done()
	g := &d.guard
	var rounds sync.WaitGroup
	defer rounds.Wait()
	var inFlight atomic.Int64
	for {
		select {
		case <-g.stop:
			return
		case <-g.wake:
		}
		if !g.open.Load() {
			gen, start, err := d.probeRound()
			if err == nil {
				g.suspect.Store(false)
				d.observe("probe", start, gen, nil)
				continue
			}
			g.open.Store(true)
			g.suspect.Store(false)
			d.observe("probe", start, gen, err)
		}
		for g.open.Load() {
			if inFlight.Load() < maxProbesInFlight {
				inFlight.Add(1)
				rounds.Add(1)
				go func() {
					defer rounds.Done()
					defer inFlight.Add(-1)
					gen, start, err := d.probeRound()
					if err == nil {
						err = d.confirmProbe()
					}
					if err == nil {
						g.open.Store(false)
					}
					d.observe("probe", start, gen, err)
				}()
			}
			t := time.NewTimer(probeEvery)
			select {
			case <-g.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// probeRound probes the store back to back while probes fail fast (a
// client's pool may hold a dead connection per slot, each failing once),
// within one deadline; it returns the health generation and the time it
// began with, and its error (nil: the store answered).
func (d *Defender) probeRound() (gen uint64, start time.Time, err error) {
	gen = d.health.Load()
	start = d.now()
	round := time.Now().Add(d.deadline())
	for try := 0; try < maxProbesPerRound; try++ {
		if err = d.probe(round); err == nil || !time.Now().Before(round) {
			break
		}
	}
	return gen, start, err
}

// confirmProbe asks once more, a moment after a probe was answered: a store
// going away may still answer once on a connection it has not closed yet,
// and one answer must not make the breaker flap.
func (d *Defender) confirmProbe() error {
	t := time.NewTimer(probeEvery / 2)
	select {
	case <-d.guard.stop:
		t.Stop()
		return errCircuitOpen
	case <-t.C:
	}
	return d.probe(time.Now().Add(d.deadline()))
}

// probe reads the probe key from the store by deadline and returns the
// outage error it met, or nil when the store answered (only outage errors
// count: see isOutage). A client that does not honour the deadline (a
// cluster client reloading its state, say) does not hold the prober: the
// probe counts as failed at the deadline, and the call ends on its own.
func (d *Defender) probe(deadline time.Time) error {
	done := make(chan error, 1)
	d.guard.wg.Add(1)
	go func() {
		defer d.guard.wg.Done()
		sctx, cancel := context.WithDeadline(context.Background(), deadline)
		_, err := d.store.Get(sctx, []string{d.prefix + ":probe"})
		cancel()
		done <- err
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err := <-done:
		if !isOutage(err) {
			return nil
		}
		return err
	case <-t.C:
		return fmt.Errorf("defender: probe: %w", context.DeadlineExceeded)
	}
}

// sampleScheduler keeps the deadline's scheduling allowance current.
func (d *Defender) sampleScheduler() {
	defer d.guard.wg.Done()
	s := newSchedSampler()
	t := time.NewTicker(schedSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-d.guard.stop:
			return
		case <-t.C:
			d.guard.allowance.Store(int64(s.allowance()))
		}
	}
}

// schedSampler turns the scheduler latency histogram into an allowance.
type schedSampler struct {
	sample []metrics.Sample
	prev   []uint64
	recent [schedWindow]float64 // p99 of each of the last samples, seconds
	i      int
}

const schedMetric = "/sched/latencies:seconds"

func newSchedSampler() *schedSampler {
	return &schedSampler{sample: []metrics.Sample{{Name: schedMetric}}}
}

// allowance reads the histogram and returns schedFactor times the worst
// 99th percentile of the last schedWindow samples, capped.
func (s *schedSampler) allowance() time.Duration {
	metrics.Read(s.sample)
	if s.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := s.sample[0].Value.Float64Histogram()
	p99 := 0.0
	if s.prev != nil && len(s.prev) == len(h.Counts) {
		p99 = deltaQuantile(h, s.prev, 0.99)
	}
	s.prev = append(s.prev[:0], h.Counts...)
	s.recent[s.i%schedWindow] = p99
	s.i++
	worst := 0.0
	for _, v := range s.recent {
		worst = max(worst, v)
	}
	a := time.Duration(worst * schedFactor * float64(time.Second))
	return min(a, maxSchedAllowance)
}

// deltaQuantile returns the upper bound of the bucket holding quantile q of
// the counts added since prev (0 when nothing was added).
func deltaQuantile(h *metrics.Float64Histogram, prev []uint64, q float64) float64 {
	var total uint64
	for i, c := range h.Counts {
		total += c - prev[i]
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range h.Counts {
		seen += c - prev[i]
		if seen >= want {
			hi := h.Buckets[i+1]
			if math.IsInf(hi, 1) {
				hi = h.Buckets[i]
			}
			return hi
		}
	}
	return 0
}

// retryLater queues a settle that failed, to be made again in the
// background (network stores only).
func (d *Defender) retryLater(del, refund []string) {
	r := retry{until: d.now().Add(d.ttl)}
	for _, k := range del {
		r.del = append(r.del, string([]byte(k)))
	}
	for _, k := range refund {
		r.refund = append(r.refund, string([]byte(k)))
	}
	if d.ttl == 0 {
		r.until = time.Time{}
	}
	select {
	case d.guard.retries <- r:
	default:
		d.log.Error("defender: success reset not queued for retry: the retry queue is full; those counters will only expire",
			"keys", len(del)+len(refund))
	}
}

// retrier makes the queued settles, in order, each until it is made or its
// counters have expired.
func (d *Defender) retrier() {
	defer d.guard.wg.Done()
	g := &d.guard
	for {
		var r retry
		select {
		case <-g.stop:
			return
		case r = <-g.retries:
		}
		backoff := probeEvery
		for {
			if !r.until.IsZero() && !d.now().Before(r.until) {
				break // the counters are gone on their own
			}
			err := errCircuitOpen
			if !g.open.Load() {
				err = d.call(context.Background(), "settle", d.now(), func(sctx context.Context) error {
					if len(r.del) > 0 {
						if err := d.store.Delete(sctx, r.del...); err != nil {
							return err
						}
						r.del = nil
					}
					if len(r.refund) > 0 {
						// A refund is not idempotent: made again only
						// when it was surely not made.
						if _, err := d.store.Incr(sctx, r.refund, -1, d.ttl); err != nil {
							d.log.Warn("defender: a success's refund failed; the counter keeps one attempt until it expires", "err", err)
						}
						r.refund = nil
					}
					return nil
				})
			}
			if err == nil {
				break
			}
			t := time.NewTimer(backoff)
			select {
			case <-g.stop:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxRetryBackoff)
		}
	}
}

// resetLater queues the deletes of a success's reset, to be made in the
// background (network stores): the caller does not wait for a second round
// trip. It reports false when the queue is full (then the caller makes
// them). Until a reset is made, a reservation of the same counter in this
// process waits for it (see waitResets), so that resets and later attempts
// are made in the order they happened.
func (d *Defender) resetLater(keys []string) bool {
	job := &resetJob{keys: make([]string, len(keys)), done: make(chan struct{})}
	for i, k := range keys {
		job.keys[i] = string([]byte(k))
	}
	for _, k := range job.keys {
		d.guard.pending.Store(k, job)
	}
	select {
	case d.guard.resets <- job:
		return true
	default:
		for _, k := range job.keys {
			d.guard.pending.CompareAndDelete(k, job)
		}
		return false
	}
}

// waitResets waits for the resets not yet made of the counters keys.
func (d *Defender) waitResets(keys []string) {
	if d.guard.resets == nil {
		return
	}
	for _, k := range keys {
		if v, ok := d.guard.pending.Load(k); ok {
			<-v.(*resetJob).done
		}
	}
}

// resetter makes the queued resets, several in one call.
func (d *Defender) resetter() {
	defer d.guard.wg.Done()
	g := &d.guard
	var batch []*resetJob
	var keys []string
	run := func() {
		keys = keys[:0]
		for _, j := range batch {
			keys = append(keys, j.keys...)
		}
		err := d.call(context.Background(), "settle", d.now(), func(sctx context.Context) error {
			return d.store.Delete(sctx, keys...)
		})
		if err != nil {
			d.retryLater(keys, nil)
		}
		for _, j := range batch {
			for _, k := range j.keys {
				g.pending.CompareAndDelete(k, j)
			}
			close(j.done)
		}
		batch = batch[:0]
	}
	for {
		select {
		case j := <-g.resets:
			batch = append(batch, j)
		more:
			for len(batch) < 64 {
				select {
				case j := <-g.resets:
					batch = append(batch, j)
				default:
					break more
				}
			}
			run()
		case <-g.stop:
			for {
				select {
				case j := <-g.resets:
					batch = append(batch, j)
					run()
				default:
					return
				}
			}
		}
	}
}
