package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
)

// More broken backends, each wrong in a way a careless implementation could
// be: the suite must catch every one, with a message that says what is wrong.

// fault is a way of being wrong.
type fault int

const (
	// faultErr fails every call with a plain error.
	faultErr fault = iota
	// faultForget accepts everything, stores nothing, and never fails.
	faultForget
	// faultShort returns one result too few from Incr and Get calls with
	// several keys.
	faultShort
	// faultBadScan returns bad scan pages: too big, foreign keys, Found ==
	// false, and endless at limit 1.
	faultBadScan
	// faultTTLLong reports expiring keys with ten times their TTL and
	// persistent keys with a TTL of 5h.
	faultTTLLong
	// faultTTLZero reports every TTL as 0 and Get entries under a wrong Key.
	faultTTLZero
)

var errBoom = errors.New("boom")

// faulty is the reference backend with a fault.
type faulty struct {
	*ref
	fault fault
}

func (f *faulty) Incr(ctx context.Context, keys []string, delta int64, ttl time.Duration) ([]int64, error) {
	switch f.fault {
	case faultErr:
		return nil, errBoom
	case faultForget:
		return make([]int64, len(keys)), nil
	case faultShort:
		if len(keys) > 1 {
			out, err := f.ref.Incr(ctx, keys, delta, ttl)
			if err != nil {
				return nil, err
			}
			return out[:len(out)-1], nil
		}
	}
	return f.ref.Incr(ctx, keys, delta, ttl)
}

func (f *faulty) SetBlock(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	switch f.fault {
	case faultErr:
		return errBoom
	case faultForget:
		return nil
	}
	return f.ref.SetBlock(ctx, key, value, ttl)
}

func (f *faulty) Get(ctx context.Context, keys []string) ([]backend.Entry, error) {
	switch f.fault {
	case faultErr:
		return nil, errBoom
	case faultForget:
		out := make([]backend.Entry, len(keys))
		for i, k := range keys {
			out[i].Key = k
		}
		return out, nil
	case faultShort:
		if len(keys) > 1 {
			out, err := f.ref.Get(ctx, keys)
			if err != nil {
				return nil, err
			}
			return out[:len(out)-1], nil
		}
	}
	es, err := f.ref.Get(ctx, keys)
	for i := range es {
		f.mangle(&es[i])
		if f.fault == faultTTLZero && es[i].Found {
			es[i].Key += "-wrong"
		}
	}
	return es, err
}

func (f *faulty) mangle(e *backend.Entry) {
	switch {
	case f.fault == faultTTLZero:
		e.TTL = 0
	case f.fault == faultTTLLong && e.TTL == 0:
		e.TTL = 5 * time.Hour
	case f.fault == faultTTLLong:
		e.TTL *= 10
	}
}

func (f *faulty) Delete(ctx context.Context, keys ...string) error {
	switch f.fault {
	case faultErr:
		return errBoom
	case faultForget:
		return nil
	}
	return f.ref.Delete(ctx, keys...)
}

func (f *faulty) Scan(ctx context.Context, prefix, cursor string, limit int) ([]backend.Entry, string, error) {
	switch f.fault {
	case faultErr:
		return nil, "", errBoom
	case faultForget:
		return nil, "", nil
	case faultBadScan:
		page := make([]backend.Entry, max(limit, 1)+1)
		for i := range page {
			page[i] = backend.Entry{Key: "zz" + cursor + "x"}
		}
		if limit == 1 {
			return page, cursor + "x", nil
		}
		return page, "", nil
	}
	es, next, err := f.ref.Scan(ctx, prefix, cursor, limit)
	for i := range es {
		f.mangle(&es[i])
	}
	return es, next, err
}

func (f *faulty) Close() error {
	if f.fault == faultErr {
		return errBoom
	}
	return f.ref.Close()
}

// runOpen runs the suite on a recorder with a fake clock.
func runOpen(open func(now func() time.Time) backend.Backend) *report {
	clk := newClock(0)
	rec := newRecorder()
	rec.Run("", newSuite(func(tb) backend.Backend { return open(clk.Now) }, clk.Advance, clk.Now).run)
	return rec.rep
}

func runFault(f fault) *report {
	return runOpen(func(now func() time.Time) backend.Backend {
		return &faulty{ref: newRef(now, false, 0), fault: f}
	})
}

// wantFailures checks that each subtest of must failed with a message
// holding its text.
func wantFailures(t *testing.T, rep *report, must map[string]string) {
	t.Helper()
	for rule, text := range must {
		msgs, ok := rep.failures[rule]
		if !ok {
			t.Errorf("subtest %s passed, want it to fail; failures:\n%s", rule, rep)
			continue
		}
		if !strings.Contains(strings.Join(msgs, "\n"), text) {
			t.Errorf("subtest %s failed with %q, want a message holding %q", rule, msgs, text)
		}
	}
}

// wantAllFail checks that every leaf subtest failed, except those listed.
func wantAllFail(t *testing.T, rep *report, except ...string) {
	t.Helper()
	leaves := rep.leaves()
	if len(leaves) < 20 {
		t.Fatalf("only %d subtests ran: %q", len(leaves), leaves)
	}
	ex := map[string]bool{}
	for _, e := range except {
		ex[e] = true
	}
	for _, name := range leaves {
		if _, failed := rep.failures[name]; !failed && !ex[name] {
			t.Errorf("subtest %s passed, want every rule to fail", name)
		}
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	t.Run("AlwaysErrors", func(t *testing.T) {
		rep := runFault(faultErr)
		// Only Block's own argument check does not reach the backend.
		wantAllFail(t, rep, "Block/EmptyDurations")
		wantFailures(t, rep, map[string]string{
			"Incr/AbsentStartsAtZero":     "boom",
			"Keys/Invalid/Empty":          "want " + backend.ErrInvalid.Error(),
			"Concurrency/Incr":            "boom",
			"Concurrency/Reserve":         "boom",
			"Closed/CloseTwice":           "first Close: boom",
			"Closed/CloseUnused":          "Close at the end of the subtest: boom",
			"Defender/Limit":              "want Allowed",
			"Concurrency/IncrSeveralKeys": "boom",
		})
	})
	t.Run("Forgets", func(t *testing.T) {
		rep := runFault(faultForget)
		wantFailures(t, rep, map[string]string{
			"Incr/AbsentStartsAtZero":           "want 1",
			"Incr/NegativeDelta":                "want -3",
			"Incr/SeveralKeysInOrder":           "one value per key",
			"Incr/ValueIsDecimal":               "want \"42\"",
			"Incr/SetBlockReplacesCounter":      "want \"blocked\"",
			"Get/Absent":                        "want \"1\"",
			"Get/BlockValues":                   "want the value given to SetBlock",
			"Get/ReplacesValue":                 "want the second value",
			"Get/NoAliasing":                    "the store must copy",
			"TTL/IncrSetsTTL":                   "not found",
			"TTL/Sliding":                       "the counter expired",
			"TTL/Reblock":                       "a re-block restarts the TTL",
			"TTL/Expiry/BeforeExpiry":           "not found",
			"TTL/Expiry/ScanSkipsExpired":       "want",
			"TTL/Expiry/ExpiredCounterRestarts": "want 1",
			"Keys/RoundTrip":                    "it shared a counter",
			"Keys/GlobPrefixIsLiteral":          "want",
			"Keys/Invalid/Space":                "want " + backend.ErrInvalid.Error(),
			"Keys/NegativeTTL":                  "want " + backend.ErrInvalid.Error(),
			"Concurrency/Incr":                  "increments were lost",
			"Concurrency/IncrSeveralKeys":       "want",
			"Concurrency/Reserve":               "each once",
			"Scan/Prefix":                       "want",
			"Scan/ValuesAndTTLs":                "did not return",
			"Scan/DeleteDuringScan":             "never deleted",
			"Scan/WriteDuringScan":              "missed",
			"Delete/Several":                    "want false true true false",
			"Namespaces/Isolation":              "want 2",
			"Reserve/NoBlock":                   "want -1 [1 1]",
			"Reserve/Blocked":                   "want 1",
			"Reserve/CountersOnly":              "want -1 [2]",
			"Reserve/BlocksOnly":                "want 0",
			"Block/Escalation":                  "want Lockouts 1",
			"Block/Permanent":                   "not found",
			"Block/RestartsTTL":                 "want Duration 1h",
			"Cancel/Cancelled/Get":              "want context canceled",
			"Cancel/DeadlineExceeded/Scan":      "want context deadline exceeded",
			"Closed/AfterClose/Reserve":         "want " + backend.ErrClosed.Error(),
			"Defender/Limit":                    "want Locked",
		})
	})
	t.Run("RepeatsCapped", func(t *testing.T) {
		// 64 goroutines fail the same way: a few lines and a count, not 64.
		rep := runFault(faultErr)
		msgs := rep.failures["Concurrency/Incr"]
		shown, summary := 0, false
		want := fmt.Sprintf("... and %d more failures of this kind, not shown; the last: Incr: boom", workers-maxRepeats)
		for _, m := range msgs {
			if m == "Incr: boom" {
				shown++
			}
			summary = summary || m == want
		}
		if shown != maxRepeats || !summary {
			t.Errorf("Concurrency/Incr reported %q, want %d lines \"Incr: boom\" and %q", msgs, maxRepeats, want)
		}
	})
	t.Run("ShortResults", func(t *testing.T) {
		rep := runFault(faultShort)
		wantFailures(t, rep, map[string]string{
			"Incr/SeveralKeysInOrder": "returned 2 values",
			"Get/Absent":              "returned 2 entries",
			"Keys/RoundTrip":          "values, want one per key",
		})
	})
	t.Run("BadScan", func(t *testing.T) {
		rep := runFault(faultBadScan)
		wantFailures(t, rep, map[string]string{
			"Scan/Pagination/limit=1": "did not end",
			"Scan/Pagination/limit=2": "returned a page of 3 entries",
			"Scan/EmptyPrefix":        "Found == false",
			"Scan/Empty":              "want none",
			"Scan/Prefix":             "without the prefix",
			"Keys/NegativeTTL":        "a rejected call wrote keys",
		})
	})
	t.Run("TTLTooLong", func(t *testing.T) {
		rep := runFault(faultTTLLong)
		wantFailures(t, rep, map[string]string{
			"TTL/IncrSetsTTL":             "was the TTL extended?",
			"TTL/SetBlockSetsTTL":         "was the TTL extended?",
			"TTL/Expiry/ZeroNeverExpires": "want 0 (never expires)",
			"Scan/ValuesAndTTLs":          "want 0",
			"Defender/Limit":              "RetryAfter",
		})
	})
	t.Run("TTLZero", func(t *testing.T) {
		rep := runFault(faultTTLZero)
		wantFailures(t, rep, map[string]string{
			"TTL/IncrSetsTTL":     "want > 0",
			"Scan/ValuesAndTTLs":  "want > 0",
			"Get/Absent":          "want the key asked for",
			"Block/Escalation":    "want > 0",
			"Reserve/NoBlock":     "want > 0",
			"TTL/SetBlockSetsTTL": "every key written with a TTL keeps it",
		})
	})
	t.Run("NilBackend", func(t *testing.T) {
		rep := runOpen(func(func() time.Time) backend.Backend { return nil })
		wantAllFail(t, rep)
		wantFailures(t, rep, map[string]string{"Incr/AbsentStartsAtZero": "nil Backend"})
	})
}
