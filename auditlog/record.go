package auditlog

import (
	"crypto/rand"
	"encoding/hex"
	"time"
	"unicode/utf8"
)

// Field bounds, in bytes, as in django-defender's AccessAttempt model.
const (
	MaxUsername  = 255
	MaxUserAgent = 255
	MaxPath      = 255
	MaxAccept    = 1025
)

// Record is one classified login attempt. It never holds a password.
type Record struct {
	// ID is unique per attempt (32 hex digits, time-ordered prefix). Sinks
	// use it to make replays idempotent.
	ID string `json:"id"`
	// Time is when the attempt was decided, in UTC.
	Time time.Time `json:"time"`
	// IP is the client address as the engine keyed it (canonical form).
	IP string `json:"ip"`
	// Username is the username as typed, trimmed, at most MaxUsername bytes.
	Username string `json:"username"`
	// CanonicalUsername is the name the engine counts the attempt under
	// (defender.Defender.Canonical of Username: case-folded, NFKC, mapped
	// by the resolver), at most MaxUsername bytes. Filter.Username is
	// compared with it. Empty in records written before the field existed
	// (and by engines that do not fill it): those are matched by Username.
	CanonicalUsername string `json:"canonical_username,omitempty"`
	// UserAgent is at most MaxUserAgent bytes.
	UserAgent string `json:"user_agent"`
	// Path is the request path, at most MaxPath bytes.
	Path string `json:"path"`
	// Accept is the HTTP Accept header, at most MaxAccept bytes.
	Accept string `json:"http_accept"`
	// Success reports a successful login (django-defender's login_valid).
	Success bool `json:"login_valid"`
	// Locked reports that the attempt was answered with the lockout
	// response.
	Locked bool `json:"locked"`
	// FailMode names the fail mode that decided the attempt because the
	// store was unavailable ("open", "local", "closed"), or is empty.
	FailMode string `json:"fail_mode,omitempty"`
	// Refused names why the request was answered without a password check
	// although no block applied: "ambiguous" (the username could not be
	// told for certain), "too_long" (a username over the bound), "too_large"
	// (a body over the bound) or "shed" (admission control: too many
	// password checks running). Empty for every other attempt. A refused
	// record has Success and Locked false.
	Refused string `json:"refused,omitempty"`
	// Count is the number of attempts the record stands for. 0 and 1 both
	// mean one attempt (a plain record leaves it 0, so it is not written);
	// a record coalesced by a Coalescer carries N > 1: N locked attempts of
	// one identity, the first at Time and the last at Until, with the
	// UserAgent, Path, Accept and typed Username of the first. Attempts
	// returns the number either way.
	Count int64 `json:"count,omitempty"`
	// Until is the time of the last attempt a coalesced record counts
	// (Count > 1), in UTC; zero for a single attempt. Cleanup and
	// Filter.Since go by Time (the first attempt), never by Until.
	Until time.Time `json:"until,omitzero"`
}

// Attempts returns the number of attempts r stands for: Count, or 1 when
// Count is 0 or 1 (or negative, which the Writer never stores).
func (r Record) Attempts() int64 { return max(r.Count, 1) }

// Recorder accepts records for asynchronous delivery. Record never blocks
// for I/O and never fails the caller: what cannot be delivered now is
// spooled or counted, never silently dropped.
type Recorder interface {
	Record(Record)
}

// NewID returns a new unique record id: 12 hex digits of milliseconds since
// the Unix epoch followed by 20 random hex digits.
func NewID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

// Truncate returns r with every string field cut to its bound, on a UTF-8
// boundary.
func (r Record) Truncate() Record {
	r.Username = truncate(r.Username, MaxUsername)
	r.CanonicalUsername = truncate(r.CanonicalUsername, MaxUsername)
	r.UserAgent = truncate(r.UserAgent, MaxUserAgent)
	r.Path = truncate(r.Path, MaxPath)
	r.Accept = truncate(r.Accept, MaxAccept)
	return r
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
