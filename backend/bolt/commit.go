package bolt

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Group commit. Every write (Incr, SetBlock, Delete, the counting half of
// Reserve, Block, the sweeper's deletions) is queued to one committer
// goroutine, which runs everything queued in one write transaction, with
// one fsync, as soon as the previous transaction has committed. A lone
// write therefore waits for one commit and no timer; under a flood, the
// writes that arrive during one commit share the next. This is the
// coalescing of bbolt's DB.Batch without its fixed delay (DB.Batch waits
// MaxBatchDelay, 10ms by default, before each batch, which caps a flood at
// concurrency/10ms and adds 10ms to every lone failure).
//
// Like DB.Batch, a function that fails is taken out of the transaction,
// which is rolled back and run again without it; so a function may run
// more than once and must compute its results afresh each time, never
// accumulate.
//
// Cancellation is decided, never guessed: a queued write is either taken
// into a transaction by the committer or abandoned by its caller, never
// both (one compare-and-swap on its state). A caller whose context ends
// while its write is still queued abandons it and returns the context's
// error: the write never runs. A caller whose write was already taken
// waits for that transaction's commit (one fsync) and returns its outcome,
// even though its context has ended meanwhile. So an error always means
// "not written", and success always means "committed".

// DefaultMaxBatchSize bounds the writes committed in one transaction when
// Options.MaxBatchSize is 0.
const DefaultMaxBatchSize = 1000

// States of a call: queued until the committer takes it into a
// transaction or its caller abandons it.
const (
	callQueued int32 = iota
	callTaken
	callAbandoned
)

type call struct {
	fn    func(*bbolt.Bucket) error
	err   chan error // receives the outcome once the call was taken
	state atomic.Int32
}

// abandon gives up a queued call, reporting whether it was still queued
// (then it will never run); false means it was taken and its outcome
// will arrive on err.
func (cl *call) abandon() bool {
	return cl.state.CompareAndSwap(callQueued, callAbandoned)
}

// testHookInTx, when set by a test, runs in each write transaction after
// its calls were taken and before they run.
var testHookInTx func()

type committer struct {
	db       *bbolt.DB
	maxSize  int
	maxDelay time.Duration

	mu      sync.Mutex
	pending []*call
	wake    chan struct{} // capacity 1: "something is pending"
	stop    chan struct{}
	done    chan struct{}
}

func newCommitter(db *bbolt.DB, maxSize int, maxDelay time.Duration) *committer {
	if maxSize <= 0 {
		maxSize = DefaultMaxBatchSize
	}
	c := &committer{
		db: db, maxSize: maxSize, maxDelay: maxDelay,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go c.loop()
	return c
}

// submit queues fn and returns its call: receive its outcome from err, or
// abandon it.
func (c *committer) submit(fn func(*bbolt.Bucket) error) *call {
	cl := &call{fn: fn, err: make(chan error, 1)}
	c.mu.Lock()
	c.pending = append(c.pending, cl)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return cl
}

// close commits what is queued, stops the goroutine and waits for it.
func (c *committer) close() {
	close(c.stop)
	<-c.done
}

func (c *committer) loop() {
	defer close(c.done)
	var spare []*call
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			c.drain(spare)
			return
		}
		if c.maxDelay > 0 {
			t := time.NewTimer(c.maxDelay)
			select {
			case <-t.C:
			case <-c.stop:
				t.Stop()
			}
		}
		spare = c.drain(spare)
	}
}

// drain commits everything queued, in transactions of at most maxSize
// calls, and returns the emptied queue for reuse.
func (c *committer) drain(spare []*call) []*call {
	for {
		c.mu.Lock()
		batch := c.pending
		c.pending = spare[:0]
		c.mu.Unlock()
		if len(batch) == 0 {
			return batch
		}
		for i := 0; i < len(batch); i += c.maxSize {
			c.commit(batch[i:min(i+c.maxSize, len(batch))])
		}
		clear(batch)
		spare = batch
	}
}

// errCall marks a transaction rolled back because one call failed.
var errCall = errors.New("bolt: a batched write failed")

// commit takes the calls that were not abandoned and runs them in one
// transaction, then sends each its outcome.
func (c *committer) commit(batch []*call) {
	calls := make([]*call, 0, len(batch))
	for _, cl := range batch {
		if cl.state.CompareAndSwap(callQueued, callTaken) {
			calls = append(calls, cl)
		}
	}
	for len(calls) > 0 {
		failed, ferr := -1, error(nil)
		err := c.db.Update(func(tx *bbolt.Tx) error {
			if testHookInTx != nil {
				testHookInTx()
			}
			b := tx.Bucket(bucket)
			for i, cl := range calls {
				if err := cl.fn(b); err != nil {
					failed, ferr = i, err
					return errCall
				}
			}
			return nil
		})
		if err == nil {
			for _, cl := range calls {
				cl.err <- nil
			}
			return
		}
		if failed < 0 { // the commit itself failed: every call fails
			for _, cl := range calls {
				cl.err <- err
			}
			return
		}
		calls[failed].err <- ferr
		calls = append(calls[:failed:failed], calls[failed+1:]...)
	}
}
