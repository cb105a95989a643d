// Package defender stops brute-force login attacks: on every login it checks
// whether the client IP or the username is blocked, counts failures in a
// shared store, blocks past a limit, and gets out of the way of real users.
// It is the Go successor of django-defender, with its settings, defaults and
// behaviour, minus its known bypasses.
//
// # The login path
//
// An application calls the engine around its own password check:
//
//	a := d.Attempt(ctx, defender.Login{IP: d.ClientIP(r), Username: name})
//	user := users[a.Username()] // look the user up by the canonical name
//	if !a.Decision().Allowed() {
//		// locked (429) or store down with fail mode closed (503)
//	}
//	if checkPassword(name, password) {
//		a.Succeeded(ctx)
//	} else if a.Failed(ctx).Verdict == defender.Locked {
//		// this failure caused the block: answer with the lockout page
//	}
//
// Attempt checks the blocks and reserves the attempt on the counters in one
// store round trip, before the password is verified (reserve-before-verify):
// with limit N, at most N+1 attempts per identity reach verification in one
// counter window, however many arrive in parallel and on however many app
// instances. Failures 1..N get the normal "wrong password" answer, failure
// N+1 gets the lockout response, and every later request is locked until
// the block expires or an admin unblocks. A success resets the counters (or
// refunds the reservation): it never counts as a failure. Check answers for
// page views without counting.
//
// # HTTP
//
// NewMiddleware returns a Middleware whose Wrap protects any net/http login
// handler without its cooperation, the way django-defender's watch_login
// does: every request is checked, every POST is counted before the handler
// runs, the handler's answer is classified (a redirect is a success,
// anything else a failure, unless the handler says otherwise with
// ReportSuccess or ReportFailure), and locked clients get the lockout
// response: 429 with Retry-After, a redirect to LockoutURL, a template, or
// JSON for clients that ask for it. ClientIP applies the proxy settings.
//
// The middleware reads the login once and hands it to the handler: the
// handler takes the username from LoginFrom and never parses it again, so
// that the name it authenticates is the name that was counted. A request
// whose username cannot be told for certain (the field twice, under a case
// variant of its name, as a non-string, in a body of another media type)
// is refused before any password check (ErrAmbiguousLogin), and counted.
// Optional verification admission control (Config.VerifyConcurrency,
// Attempt.Admit) sheds password checks past a bound instead of letting them
// starve the site.
//
// # Identities
//
// The client IP comes from the socket peer, or, behind trusted proxies only,
// from the right-most untrusted entry of the proxy header; it is parsed
// strictly and canonicalised, and IPv6 clients are grouped by prefix (/64 by
// default). Usernames are trimmed, NFKC-normalised and case-folded, so that
// "Alice", " alice " and fullwidth "ａｌｉｃｅ" share one counter; a Resolver
// can map e-mail addresses to usernames. What is counted depends on the mode:
// IP and username (default), the (IP, username) pair
// (LockOutByIPAndUsername), username only (DisableIPLockout) or IP only
// (DisableUsernameLockout). Allow lists are never counted; block-listed IPs
// are always locked.
//
// # Blocks and escalation
//
// A block lasts LockoutCooloffTimes[i] for the identity's (i+1)-th lockout
// within AccessAttemptExpiration (the last entry past the end; 0 means
// permanent). The lockout count lives in the store under its own TTL, so
// escalation needs no database. Blocks lists them for an admin; UnblockIP,
// UnblockUsername and UnblockPair remove them.
//
// # Storage and outages
//
// The engine keeps nothing itself: counters and blocks live in a
// backend.Backend (memory, bolt, redis, memcached, or your own, checked by
// the conformance package). Every store call has a deadline: StoreTimeout
// of the store's own time plus the process's current scheduling delay, so
// that a CPU saturated by password hashing is not taken for a store outage.
// Store calls are detached from the caller's cancellation: a client that
// goes away abandons its attempt (Abandoned, reservation refunded), it never
// makes an outage. When the store fails, FailMode decides: closed (503, the
// default), open (proceed, flagged in the audit record) or local (an
// in-process store until the shared one answers); a circuit breaker then
// answers at once until a probe finds the store back. Failures and
// recoveries fire events, logs and metrics. Over a network store, blocks
// seen are kept in a bounded near-cache (BlockCacheTTL), so that a flood
// from a blocked client costs no store round trip; unblocks are announced
// to other processes on stores that implement backend.Notifier.
//
// # Events, audit, metrics
//
// Hooks (Options.Hooks, OnEvent) receive events on real transitions only:
// blocks, admin unblocks, store failure and recovery; they run off the login
// path. Every decided attempt is sent to Options.Audit (see package
// auditlog) when StoreAccessAttempts is set; locked attempts of one
// identity are coalesced into one record per AuditCoalesceWindow, with a
// count. Options.Metrics receives
// counters and store latencies (see package metrics/prometheus).
package defender
