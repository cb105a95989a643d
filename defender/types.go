package defender

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend"
)

// FailMode says what a login check does when the store fails or times out.
type FailMode string

// Fail modes (DEFENDER_FAIL_MODE).
const (
	// FailClosed answers Unavailable (HTTP 503) without verifying the
	// password. The default.
	FailClosed FailMode = "closed"
	// FailOpen lets the login proceed unprotected, flagged in the audit
	// record.
	FailOpen FailMode = "open"
	// FailLocal falls back to an in-process memory store until the shared
	// store answers again.
	FailLocal FailMode = "local"
)

// Verdict is the outcome of a check.
type Verdict int

// Verdicts.
const (
	// Allow: go on (verify the password, or serve the page).
	Allow Verdict = iota
	// Locked: answer with the lockout response; do not verify the password.
	Locked
	// Unavailable: the store failed and the fail mode is closed; answer 503
	// without verifying the password.
	Unavailable
	// Refused: the login is malformed or ambiguous (a username over
	// MaxUsernameBytes, or a request the middleware cannot read one
	// username from); answer 400 without verifying the password. It was
	// counted as a failure of the client's IP (see Defender.Refuse).
	Refused
	// Abandoned: the caller's context ended (the client went away) before
	// the decision; do not verify the password. Nothing stays counted and
	// no fail mode applied: a client hanging up is not a store outage.
	Abandoned
	// Shed: the password check was not admitted because too many are
	// running (see Config.VerifyConcurrency and Attempt.Admit); answer 503 with
	// Retry-After. Nothing stays counted.
	Shed
)

// String returns "allow", "locked", "unavailable", "refused", "abandoned"
// or "shed".
func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Locked:
		return "locked"
	case Unavailable:
		return "unavailable"
	case Refused:
		return "refused"
	case Abandoned:
		return "abandoned"
	case Shed:
		return "shed"
	}
	return "verdict(?)"
}

// Kind names what an identity is.
type Kind string

// Identity kinds, as they appear in keys, events, the admin and JSON.
const (
	KindIP       Kind = "ip"
	KindUsername Kind = "username"
	KindPair     Kind = "pair"
)

// Decision is the answer of Check, Attempt, Succeeded or Failed.
type Decision struct {
	// Verdict says what to do.
	Verdict Verdict
	// Kind is the identity whose block (or burst) locked the request, when
	// Verdict is Locked.
	Kind Kind
	// Blocklisted reports a lock by DEFENDER_BLOCKLIST_IPS.
	Blocklisted bool
	// Permanent reports a block without expiry (RetryAfter is then 0).
	Permanent bool
	// RetryAfter is the time left on the block, when Locked and not
	// Permanent. A burst refused before verification reports the cooloff
	// of the first lockout.
	RetryAfter time.Duration
	// Duration is the block's full length, when known: on the Decision of
	// the failure that set the block and of a burst refused before
	// verification; 0 otherwise (the lockout page then estimates it from
	// the escalation list and RetryAfter).
	Duration time.Duration
	// FailMode is set when the store failed and the fail mode decided
	// (Verdict Unavailable for closed, Allow for open, the local store's
	// answer for local).
	FailMode FailMode
	// Err is the store error behind FailMode, if any.
	Err error
}

// Allowed reports Verdict == Allow.
func (d Decision) Allowed() bool { return d.Verdict == Allow }

// Login describes one login attempt (or one page view, for Check).
type Login struct {
	// IP is the client address, normally from Defender.ClientIP. An
	// invalid (zero) address is never counted; only the username is.
	IP netip.Addr
	// Username is the username as typed. It is trimmed, NFKC-normalised and
	// case-folded for counting; empty means no username.
	Username string
	// UserAgent, Path and Accept are copied into the audit record.
	UserAgent, Path, Accept string
}

// EventKind names an event.
type EventKind string

// Event kinds. Hooks fire on real transitions only.
const (
	EventIPBlocked       EventKind = "ip_blocked"
	EventUsernameBlocked EventKind = "username_blocked"
	EventPairBlocked     EventKind = "pair_blocked"
	EventUnblocked       EventKind = "unblocked"
	EventStoreFailed     EventKind = "store_failed"
	EventStoreRecovered  EventKind = "store_recovered"
)

// Event is passed to hooks (django-defender's signals).
type Event struct {
	Kind EventKind
	Time time.Time
	// Identity is the blocked or unblocked identity's kind (empty for store
	// events).
	Identity Kind
	// IP is the blocked IP (or IPv6 prefix, as "2001:db8::/64"), for IP and
	// pair events.
	IP string
	// Username is the canonical username, for username and pair events.
	Username string
	// Duration is the block's duration; 0 with Permanent.
	Duration time.Duration
	// Permanent reports a block without expiry.
	Permanent bool
	// Count is the failure count that caused the block.
	Count int64
	// Lockouts is the identity's lockout count within the escalation window.
	Lockouts int64
	// Err is the store error, for store events.
	Err error
}

// Hook receives events. It runs on its own goroutine; a slow or panicking
// hook never delays or breaks a login.
type Hook func(Event)

// Metrics receives the engine's measurements. Implementations must be safe
// for concurrent use and fast; see the metrics/prometheus package for an
// adapter. Nil methods are never called on a nil Metrics: pass nil to
// disable.
type Metrics interface {
	// Attempt counts a decided login attempt: outcome is "success",
	// "failure", "locked", "unavailable", "shed" (admission control) or
	// "abandoned" (the client went away). A refused request (Refused) is
	// counted as the "failure" it is settled as.
	Attempt(outcome string)
	// Block counts a block set on an identity of kind.
	Block(kind Kind)
	// Unblock counts an admin unblock of an identity of kind.
	Unblock(kind Kind)
	// StoreCall observes one store call: op is "reserve", "check", "block",
	// "settle", "admin"; err is nil on success.
	StoreCall(op string, d time.Duration, err error)
	// FailMode counts a decision taken by the fail mode.
	FailMode(mode FailMode)
}

// Resolver maps a canonical username to the identity it counts under, for
// example an e-mail address to its account's username, so that both
// spellings share one counter. It must be fast and must not fail: return
// name unchanged when unknown.
type Resolver func(ctx context.Context, name string) string

// Options holds what a Config cannot say: code and collaborators. The zero
// value (or nil) is valid.
type Options struct {
	// Resolver, when set, maps canonical usernames (see Resolver).
	Resolver Resolver
	// Hooks are called on events.
	Hooks []Hook
	// Audit receives one record per attempt when Config.StoreAccessAttempts
	// is set. Nil: no audit.
	Audit auditlog.Recorder
	// Metrics receives measurements. Nil: none.
	Metrics Metrics
	// Logger receives structured logs. Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock, for tests. Nil: time.Now.
	Now func() time.Time
	// Local is the store used by FailLocal while the shared store is down.
	// Nil: a new memory store.
	Local backend.Backend
}

// BlockInfo is one blocked identity, as the admin lists it.
type BlockInfo struct {
	// Kind is the identity's kind.
	Kind Kind `json:"kind"`
	// IP is the IP or IPv6 prefix (KindIP, KindPair).
	IP string `json:"ip,omitempty"`
	// Username is the canonical username (KindUsername, KindPair).
	Username string `json:"username,omitempty"`
	// Count is the failure count that caused the block.
	Count int64 `json:"count"`
	// Permanent reports a block without expiry.
	Permanent bool `json:"permanent"`
	// Remaining is the time left; 0 when Permanent.
	Remaining time.Duration `json:"-"`
	// SecondsRemaining is Remaining in whole seconds, rounded up.
	SecondsRemaining int64 `json:"seconds_remaining"`
}
