package defender

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAuditCoalescedFlood: with the default window, a flood of locked
// attempts on one blocked identity is written as one record per window that
// carries the count; failures are one record each; every record carries the
// canonical username and an id; Close hands over what is still open.
func TestAuditCoalescedFlood(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuditCoalesceWindow = time.Second })
	l := login("192.0.2.1", "  ALICE ")
	for i := 0; i < 4; i++ {
		e.fail(l) // 3 failures, the 4th blocks
	}
	const perSecond, seconds = 50, 10
	for s := 0; s < seconds; s++ {
		for i := 0; i < perSecond; i++ {
			if dec := e.d.Attempt(ctx, l).Decision(); dec.Verdict != Locked {
				t.Fatalf("%+v", dec)
			}
			e.clk.Advance(time.Second / perSecond)
		}
	}
	if err := e.d.Close(); err != nil {
		t.Fatal(err)
	}
	recs := e.audit.all()
	failures, locked, lockedRecords := 0, int64(0), 0
	for _, r := range recs {
		if r.ID == "" || r.CanonicalUsername != "alice" || r.Username != "ALICE" {
			t.Errorf("record %+v: want an id, the canonical and the typed name", r)
		}
		if r.Locked {
			locked += r.Attempts()
			lockedRecords++
		} else {
			failures++
		}
	}
	if failures != 3 || locked != 1+perSecond*seconds {
		t.Fatalf("%d failure records and %d locked attempts, want 3 and %d", failures, locked, 1+perSecond*seconds)
	}
	if lockedRecords > seconds+2 {
		t.Fatalf("%d records for %d locked attempts over %d s: not coalesced", lockedRecords, locked, seconds)
	}
}

// TestAuditRefusedRecords: a refused login is recorded as what it is, with
// the typed name but no canonical one (it was not counted).
func TestAuditRefusedRecords(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("y", MaxUsernameBytes+1)
	e.d.Attempt(ctx, login("192.0.2.1", long))
	e.d.Refuse(ctx, login("192.0.2.2", "bob"), ErrAmbiguousLogin)
	e.d.Refuse(ctx, login("192.0.2.3", ""), errBodyTooLarge)
	e.d.Refuse(ctx, login("192.0.2.4", ""), errShed)
	var got []string
	for _, r := range e.audit.all() {
		if r.Success || r.Locked || r.CanonicalUsername != "" {
			t.Errorf("refused record %+v", r)
		}
		got = append(got, r.Refused)
	}
	if strings.Join(got, ",") != "too_long,ambiguous,too_large,shed" {
		t.Fatalf("refused reasons %v", got)
	}
	if refusedReason(errors.New("x")) != "ambiguous" {
		t.Fatal("unknown reasons are ambiguous")
	}
}
