package admin

import (
	"testing"
	"time"
)

func TestRelativeTimes(t *testing.T) {
	tests := []struct {
		s    int64
		want string
	}{
		{-3, "0 s"}, {0, "0 s"}, {45, "45 s"}, {60, "1 min"}, {61, "2 min"}, {240, "4 min"}, {3599, "60 min"},
		{3600, "1 h"}, {3660, "1 h 1 min"}, {5400, "1 h 30 min"}, {7199, "2 h"}, {86399, "24 h"},
		{86400, "1 day"}, {3 * 86400, "3 days"},
	}
	for _, tt := range tests {
		if got := span(tt.s); got != tt.want {
			t.Errorf("span(%d) = %q, want %q", tt.s, got, tt.want)
		}
	}
	if got := untilText(240); got != "in 4 min" {
		t.Errorf("untilText = %q", got)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		ago  time.Duration
		want string
	}{{0, "just now"}, {4 * time.Second, "just now"}, {30 * time.Second, "30 s ago"}, {3 * time.Minute, "3 min ago"}, {-time.Minute, "just now"}} {
		if got := agoText(now, now.Add(-tt.ago)); got != tt.want {
			t.Errorf("agoText(%v) = %q, want %q", tt.ago, got, tt.want)
		}
	}
}
