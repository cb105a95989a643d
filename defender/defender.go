package defender

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/go-defender/defender/backend"
)

// Defender applies the login policy of a Config to a Backend. It is safe for
// concurrent use. Create it with New; Close it when done.
type Defender struct {
	store backend.Backend
	cfg   Config
	opts  Options
}

// New returns a Defender that keeps its counters and blocks in store. cfg is
// validated (see Config.Validate); opts may be nil. The caller keeps
// ownership of store and closes it after Close.
func New(store backend.Backend, cfg Config, opts *Options) (*Defender, error) {
	panic("unimplemented")
}

// Config returns the validated configuration in force.
func (d *Defender) Config() Config { return d.cfg }

// ClientIP returns the client address of r per the proxy settings
// (behaviour section 3): the peer, or the right-most untrusted entry of the
// proxy header when the peer is a trusted proxy; canonical, unmapped, zone
// and port dropped. It returns the zero Addr when no valid address is found.
func (d *Defender) ClientIP(r *http.Request) netip.Addr { panic("unimplemented") }

// Canonical returns the canonical form of username: trimmed, NFKC,
// case-folded, then mapped by the Resolver. Idempotent.
func (d *Defender) Canonical(ctx context.Context, username string) string {
	panic("unimplemented")
}

// Check reports whether l is locked, without counting anything (for page
// views and any request that is not a login attempt).
func (d *Defender) Check(ctx context.Context, l Login) Decision { panic("unimplemented") }

// Attempt checks l and, when it is not locked, reserves one attempt on each
// of its counters before the password is verified. The caller verifies the
// password only when a.Decision().Allowed(), then calls exactly one of
// a.Succeeded or a.Failed. Attempt never returns nil.
func (d *Defender) Attempt(ctx context.Context, l Login) *Attempt { panic("unimplemented") }

// Attempt is one login attempt in progress. It is not safe for concurrent
// use; settle it once.
type Attempt struct {
	d *Defender
}

// Decision is the answer of the check: verify the password only when
// Allowed.
func (a *Attempt) Decision() Decision { panic("unimplemented") }

// Succeeded settles a verified, correct login: it resets the counters (or
// refunds the reservation) and records the attempt.
func (a *Attempt) Succeeded(ctx context.Context) Decision { panic("unimplemented") }

// Failed settles a verified, wrong login: the attempt stays counted; a
// counter past its limit blocks its identity. The returned Decision is
// Locked when this failure caused a block (failure limit+1 gets the lockout
// response).
func (a *Attempt) Failed(ctx context.Context) Decision { panic("unimplemented") }

// Blocks lists blocked identities one page at a time: start with cursor "",
// stop when next is "". limit <= 0 means 100.
func (d *Defender) Blocks(ctx context.Context, cursor string, limit int) (blocks []BlockInfo, next string, err error) {
	panic("unimplemented")
}

// UnblockIP removes the block and failure counter of ip, given as an address
// (any address of an IPv6 prefix) or a prefix in the form BlockInfo shows.
// It reports whether a block existed.
func (d *Defender) UnblockIP(ctx context.Context, ip string) (bool, error) { panic("unimplemented") }

// UnblockUsername removes the block and failure counter of username (in any
// spelling that canonicalises to it). It reports whether a block existed.
func (d *Defender) UnblockUsername(ctx context.Context, username string) (bool, error) {
	panic("unimplemented")
}

// UnblockPair removes the block and counter of the (ip, username) pair.
func (d *Defender) UnblockPair(ctx context.Context, ip, username string) (bool, error) {
	panic("unimplemented")
}

// OnEvent adds a hook called on every event (see Hook).
func (d *Defender) OnEvent(h Hook) { panic("unimplemented") }

// Close stops the event dispatcher and the local fallback store. It does
// not close the Backend given to New.
func (d *Defender) Close() error { panic("unimplemented") }

// DefaultConfig returns django-defender's defaults plus defender's own.
func DefaultConfig() Config { panic("unimplemented") }

// Validate reports the first bad setting, naming its environment variable.
func (c Config) Validate() error { panic("unimplemented") }

// ConfigFromEnv returns DefaultConfig overridden by the DEFENDER_*
// environment variables. A bad value is an error naming the variable.
func ConfigFromEnv() (Config, error) { panic("unimplemented") }

// ConfigFromLookup is ConfigFromEnv with another source of variables, such
// as a map in tests or flags.
func ConfigFromLookup(lookup func(name string) (string, bool)) (Config, error) {
	panic("unimplemented")
}
