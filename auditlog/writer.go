package auditlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Default WriterOptions values.
const (
	DefaultQueueSize       = 8192
	DefaultBatchSize       = 256
	DefaultWriteTimeout    = 5 * time.Second
	DefaultRetryMin        = 250 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultSpoolMaxBytes   = 256 << 20
	DefaultSegmentMaxBytes = 4 << 20
)

// WriterOptions configures a Writer. Zero fields take the defaults above;
// SpoolDir is required.
type WriterOptions struct {
	// SpoolDir is the directory where records wait while the sink is down
	// (created 0700 if missing). One Writer at a time may use it: a second
	// one fails with ErrSpoolLocked. Required.
	SpoolDir string
	// QueueSize bounds the in-memory queue (records). When it is full,
	// Record appends to the spool instead.
	QueueSize int
	// BatchSize is the most records written to the sink in one call.
	BatchSize int
	// WriteTimeout is the deadline of each sink call.
	WriteTimeout time.Duration
	// RetryMin and RetryMax bound the delay between attempts to reach a
	// failed sink (doubling from RetryMin up to RetryMax).
	RetryMin, RetryMax time.Duration
	// SpoolMaxBytes bounds the spool on disk. Records that do not fit are
	// refused, counted in Stats.Dropped and logged (see the package doc).
	SpoolMaxBytes int64
	// SegmentMaxBytes is the size at which a spool segment file is closed
	// and a new one started.
	SegmentMaxBytes int64
	// Logger receives the writer's logs. Nil: slog.Default().
	Logger *slog.Logger
}

// Stats is a snapshot of a Writer's counters. Counters (Delivered, Spooled,
// Overflowed, Dropped, SinkErrors, Corrupt) count since the Writer was
// created; Queued, Pending and SpoolBytes are current levels.
type Stats struct {
	// Queued is the number of records in memory: accepted by Record and
	// neither delivered nor spooled yet.
	Queued int64
	// Pending is the number of records in the spool waiting for delivery
	// (including those a previous process left there).
	Pending int64
	// SpoolBytes is the disk space the spool uses.
	SpoolBytes int64
	// Delivered counts records the sink accepted.
	Delivered uint64
	// Spooled counts records written to the spool (because the sink failed,
	// to keep order behind older spooled records, or because the queue was
	// full).
	Spooled uint64
	// Overflowed counts records that Record wrote to the spool directly
	// because the queue was full (included in Spooled).
	Overflowed uint64
	// Dropped counts records refused because the spool was full or failed,
	// or recorded after Close. Each drop is also logged at error level.
	Dropped uint64
	// SinkErrors counts failed sink calls.
	SinkErrors uint64
	// Corrupt counts undecodable spool lines skipped (a line torn by a crash
	// while being spooled) and spool segment files that vanished (deleted
	// by someone else) before they were replayed; each is logged.
	Corrupt uint64
}

var _ Recorder = (*Writer)(nil)

// spoolBatch is the most queued records appended to the spool in one
// write and fsync while older records are spooled.
const spoolBatch = 1024

// Writer delivers records to a Sink asynchronously. It implements Recorder:
// Record never waits for the sink. Records are batched; when the sink
// fails they are spooled to disk and replayed, in order, when it is back.
// Create one with NewWriter and stop it with Close.
type Writer struct {
	sink   Sink
	opts   WriterOptions
	log    *slog.Logger
	spool  *spool
	q      chan Record
	kick   chan struct{}
	done   chan struct{}
	ctx    context.Context // sink calls; canceled when Close's context ends
	cancel context.CancelFunc

	mu     sync.RWMutex // Record holds it shared; Close exclusively
	closed bool

	queued     atomic.Int64
	delivered  atomic.Uint64
	spooled    atomic.Uint64
	overflowed atomic.Uint64
	dropped    atomic.Uint64
	sinkErrors atomic.Uint64
	dropLog    atomic.Int64 // unix nanos of the last drop log line

	// Flusher goroutine state.
	down      bool
	backoff   time.Duration
	nextRetry time.Time
	closeErr  error

	dropMu  sync.Mutex
	dropErr error // the last reason records were dropped
}

// NewWriter returns a running Writer delivering to sink. It opens and locks
// opts.SpoolDir and starts replaying what a previous process left there.
// The Writer does not close sink.
func NewWriter(sink Sink, opts WriterOptions) (*Writer, error) {
	if sink == nil {
		return nil, fmt.Errorf("%w: sink is nil", ErrInvalidConfig)
	}
	if opts.SpoolDir == "" {
		return nil, fmt.Errorf("%w: WriterOptions.SpoolDir is required", ErrInvalidConfig)
	}
	for _, c := range []struct {
		name string
		bad  bool
	}{
		{"QueueSize", opts.QueueSize < 0},
		{"BatchSize", opts.BatchSize < 0},
		{"WriteTimeout", opts.WriteTimeout < 0},
		{"RetryMin", opts.RetryMin < 0},
		{"RetryMax", opts.RetryMax < 0},
		{"SpoolMaxBytes", opts.SpoolMaxBytes < 0},
		{"SegmentMaxBytes", opts.SegmentMaxBytes < 0},
	} {
		if c.bad {
			return nil, fmt.Errorf("%w: WriterOptions.%s is negative", ErrInvalidConfig, c.name)
		}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&opts.QueueSize, DefaultQueueSize)
	def(&opts.BatchSize, DefaultBatchSize)
	defDur(&opts.WriteTimeout, DefaultWriteTimeout)
	defDur(&opts.RetryMin, DefaultRetryMin)
	defDur(&opts.RetryMax, DefaultRetryMax)
	def64(&opts.SpoolMaxBytes, DefaultSpoolMaxBytes)
	def64(&opts.SegmentMaxBytes, DefaultSegmentMaxBytes)
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = opts.RetryMin
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	sp, err := openSpool(opts.SpoolDir, opts.SpoolMaxBytes, opts.SegmentMaxBytes)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		sink:    sink,
		opts:    opts,
		log:     log.With("component", "auditlog"),
		spool:   sp,
		q:       make(chan Record, opts.QueueSize),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
		backoff: opts.RetryMin,
	}
	if n := sp.pending.Load(); n > 0 {
		w.log.Info("audit spool: replaying records left by a previous run", "records", n, "dir", opts.SpoolDir)
	}
	go w.run()
	return w, nil
}

// Record accepts r for delivery and returns at once. It fills in a missing
// ID (NewID, before r can be queued or spooled, so that replays carry the
// same ID) and Time (now), converts Time and Until to UTC, turns a
// negative Count into 0 (one attempt), replaces invalid UTF-8 with U+FFFD
// (so that every sink stores the same string) and truncates the fields to
// their bounds. When the queue is full, r is appended to the spool (a
// write(2), no fsync);
// when that fails too (spool full or broken) or the Writer is closed, r is
// counted in Stats.Dropped and an error is logged.
func (w *Writer) Record(r Record) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	// The ID is assigned here, before the record can reach the queue or
	// the spool, so that every replay of it carries the same ID (sinks are
	// idempotent by ID). Callers may leave it empty: the engine does, so
	// that the login path does not pay for crypto/rand.
	if r.ID == "" {
		r.ID = NewID(r.Time)
	}
	if !r.Until.IsZero() {
		r.Until = r.Until.UTC()
	}
	if r.Count < 0 {
		r.Count = 0
	}
	for _, f := range []*string{&r.IP, &r.Username, &r.CanonicalUsername, &r.UserAgent, &r.Path, &r.Accept, &r.FailMode} {
		if !utf8.ValidString(*f) {
			*f = strings.ToValidUTF8(*f, "\uFFFD")
		}
	}
	r = r.Truncate()
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.drop(1, ErrClosed)
		return
	}
	w.queued.Add(1)
	select {
	case w.q <- r:
		return
	default:
	}
	w.queued.Add(-1)
	if err := w.spool.append([]Record{r}, false); err != nil {
		w.drop(1, err)
		return
	}
	w.spooled.Add(1)
	w.overflowed.Add(1)
}

// drop counts n lost records and logs it (at most one line per second
// carries the running total; none is silent: the counter is exact).
func (w *Writer) drop(n int, err error) {
	w.dropMu.Lock()
	w.dropErr = err
	w.dropMu.Unlock()
	total := w.dropped.Add(uint64(n))
	now := time.Now().UnixNano()
	last := w.dropLog.Load()
	if now-last >= int64(time.Second) && w.dropLog.CompareAndSwap(last, now) {
		w.log.Error("audit records dropped", "records", n, "dropped_total", total, "err", err)
	}
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Queued:     w.queued.Load(),
		Pending:    max(0, w.spool.pending.Load()),
		SpoolBytes: w.spool.total.Load(),
		Delivered:  w.delivered.Load(),
		Spooled:    w.spooled.Load(),
		Overflowed: w.overflowed.Load(),
		Dropped:    w.dropped.Load(),
		SinkErrors: w.sinkErrors.Load(),
		Corrupt:    w.spool.corrupt.Load(),
	}
}

// Flush asks the Writer to deliver everything now (retrying a failed sink
// once at once, then on its usual backoff) and waits until nothing is queued or spooled, or ctx ends (then
// it returns ctx's error; the records stay queued or spooled).
func (w *Writer) Flush(ctx context.Context) error {
	w.wake()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if w.idle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.done:
			if w.idle() {
				return nil
			}
			return ErrClosed
		case <-t.C:
		}
	}
}

func (w *Writer) idle() bool { return w.queued.Load() <= 0 && w.spool.pending.Load() <= 0 }

func (w *Writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Close stops accepting records, delivers what is queued and spooled while
// ctx lasts and the sink works, and persists the rest to the spool (fsynced)
// for the next Writer on the same directory. When it returns, the Writer's
// goroutine has stopped. It returns an error only if records were dropped
// (during the shutdown or at any earlier time of the Writer's life: each
// drop was also logged and counted in Stats) or the spool could not be
// closed cleanly; calling it again returns ErrClosed.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	close(w.q)
	w.mu.Unlock()
	stop := context.AfterFunc(ctx, w.cancel)
	defer stop()
	<-w.done
	w.cancel()
	err := w.closeErr
	if n := w.dropped.Load(); n > 0 {
		w.dropMu.Lock()
		err = errors.Join(fmt.Errorf("auditlog: %d record(s) dropped: %w", n, w.dropErr), err)
		w.dropMu.Unlock()
	}
	return err
}

// run is the flusher goroutine.
func (w *Writer) run() {
	defer close(w.done)
	batch := make([]Record, 0, w.opts.BatchSize)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	open := true
	for open {
		// Block for records only when there is no replay work due.
		var retry <-chan time.Time
		block := true
		if w.spool.pending.Load() > 0 {
			if d := time.Until(w.nextRetry); d > 0 {
				timer.Reset(d)
				retry = timer.C
			} else {
				block = false
			}
		}
		// While records wait in the spool, new ones go there too (order):
		// take as many as are queued, so that one write and one fsync
		// cover them all (group commit).
		limit := w.opts.BatchSize
		if w.spool.pending.Load() > 0 {
			limit = max(limit, spoolBatch)
		}
		batch, open = w.gather(batch[:0], limit, block, retry)
		if len(batch) > 0 {
			w.deliver(batch)
		}
		if w.spool.pending.Load() > 0 && !time.Now().Before(w.nextRetry) && w.ctx.Err() == nil {
			w.replay()
		}
	}
	w.shutdown()
}

// gather collects up to limit queued records. When block is set it
// waits for the first one (or a kick, or retry). It reports false when the
// queue is closed and empty.
func (w *Writer) gather(batch []Record, limit int, block bool, retry <-chan time.Time) ([]Record, bool) {
	if block {
		select {
		case r, ok := <-w.q:
			if !ok {
				return batch, false
			}
			batch = append(batch, r)
		case <-w.kick:
			w.nextRetry = time.Time{}
			return batch, true
		case <-retry:
			return batch, true
		}
	}
	for len(batch) < limit {
		select {
		case r, ok := <-w.q:
			if !ok {
				return batch, false
			}
			batch = append(batch, r)
		default:
			return batch, true
		}
	}
	return batch, true
}

// deliver writes a fresh batch to the sink, or to the spool when older
// records are spooled (order), the sink is down and not due for a retry, or
// the sink fails.
func (w *Writer) deliver(batch []Record) {
	defer w.queued.Add(-int64(len(batch)))
	if w.spool.pending.Load() == 0 && (!w.down || !time.Now().Before(w.nextRetry)) && w.ctx.Err() == nil {
		if err := w.write(batch); err == nil {
			w.delivered.Add(uint64(len(batch)))
			return
		}
	}
	w.toSpool(batch)
}

// replay delivers one batch from the spool.
func (w *Writer) replay() {
	c0 := w.spool.corrupt.Load()
	recs, err := w.spool.next(w.opts.BatchSize)
	if c := w.spool.corrupt.Load(); c > c0 {
		w.log.Warn("audit spool: skipped undecodable lines or vanished segment files", "count", c-c0, "dir", w.opts.SpoolDir)
	}
	if err != nil {
		w.failed(fmt.Errorf("reading spool: %w", err), false)
		return
	}
	if len(recs) == 0 {
		return
	}
	if err := w.write(recs); err != nil {
		return
	}
	// Count before ack lowers Pending, so that a Flush that sees nothing
	// pending also sees the delivery.
	w.delivered.Add(uint64(len(recs)))
	if err := w.spool.ack(); err != nil {
		w.failed(fmt.Errorf("updating spool: %w", err), false)
	}
}

// write calls the sink with the write timeout, tracking its health.
func (w *Writer) write(recs []Record) error {
	ctx, cancel := context.WithTimeout(w.ctx, w.opts.WriteTimeout)
	err := w.sink.Write(ctx, recs)
	cancel()
	if err != nil {
		w.failed(err, true)
		return err
	}
	if w.down {
		w.down = false
		w.log.Info("audit sink is back; replaying the spool", "pending", w.spool.pending.Load())
	}
	w.backoff = w.opts.RetryMin
	w.nextRetry = time.Time{}
	return nil
}

// failed records a failure and schedules the next attempt.
func (w *Writer) failed(err error, sink bool) {
	if sink {
		w.sinkErrors.Add(1)
	}
	if !w.down {
		w.log.Warn("audit sink failed; spooling records to disk until it is back", "err", err, "dir", w.opts.SpoolDir)
	} else {
		w.log.Debug("audit sink still failing", "err", err, "retry_in", w.backoff)
	}
	w.down = true
	w.nextRetry = time.Now().Add(w.backoff)
	w.backoff = min(2*w.backoff, w.opts.RetryMax)
}

// toSpool persists a batch (one write and one fsync).
func (w *Writer) toSpool(batch []Record) {
	if err := w.spool.append(batch, true); err != nil {
		w.drop(len(batch), err)
		return
	}
	w.spooled.Add(uint64(len(batch)))
}

// shutdown runs when the queue is closed and empty: replay while the Close
// context lasts and the sink works, then close the spool.
func (w *Writer) shutdown() {
	for w.spool.pending.Load() > 0 && w.ctx.Err() == nil {
		errs, before := w.sinkErrors.Load(), w.spool.pending.Load()
		w.replay()
		if w.sinkErrors.Load() != errs || w.spool.pending.Load() >= before {
			break
		}
	}
	if err := w.spool.close(); err != nil {
		w.closeErr = errors.Join(w.closeErr, err)
	}
	if n := w.spool.pending.Load(); n > 0 {
		w.log.Info("audit writer closed; records kept in the spool for the next run", "pending", n, "dir", w.opts.SpoolDir)
	}
}
