package conformance

import (
	"sync"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	c := NewClock(time.Time{})
	if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !c.Now().Equal(want) {
		t.Fatalf("NewClock(zero).Now() = %v, want %v", c.Now(), want)
	}
	start := time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC)
	c = NewClock(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now() = %v, want the start %v", c.Now(), start)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); c.Advance(time.Second); _ = c.Now() }()
	}
	wg.Wait()
	if got := c.Now().Sub(start); got != 10*time.Second {
		t.Fatalf("after 10 concurrent Advance(1s): %v later, want 10s", got)
	}
	c.Advance(-time.Hour)
	c.Advance(0)
	if got := c.Now().Sub(start); got != 10*time.Second {
		t.Fatalf("Advance(-1h) and Advance(0) moved the clock to %v after the start, want it unchanged", got)
	}
}
