package auditlog

import "time"

// NewCoalescerTicked is NewCoalescer with the background goroutine's ticks
// given by the test (and no real ticker).
func NewCoalescerTicked(next Recorder, window time.Duration, opts *CoalescerOptions, tick <-chan time.Time) (*Coalescer, error) {
	return newCoalescer(next, window, opts, tick, nil)
}
