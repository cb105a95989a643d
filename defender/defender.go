package defender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend"
)

// ErrClosed is returned by the admin methods after Close.
var ErrClosed = errors.New("defender: closed")

// ErrBadIdentity is returned by the unblock methods for an identifier that
// is not a valid IP address, prefix or username.
var ErrBadIdentity = errors.New("defender: bad identity")

// Defender applies the login policy of a Config to a Backend. It is safe for
// concurrent use. Create it with New; Close it when done.
type Defender struct {
	store     backend.Backend
	local     backend.Backend // FailLocal's fallback store
	ownLocal  bool
	cfg       Config
	ttl       time.Duration
	lockouts  []time.Duration
	limitIP   int64
	limitUser int64
	prefix    string
	allowUser map[string]struct{}

	resolver  Resolver
	audit     auditlog.Recorder
	coalescer *auditlog.Coalescer // wraps the caller's recorder; closed by Close
	auditIDs  bool                // the recorder does not assign record ids itself
	metrics   Metrics
	log       *slog.Logger
	now       func() time.Time
	immediate bool // store never blocks on I/O: no per-call deadline
	borrow    bool // store copies the keys it keeps: lend it pooled buffers

	hooksMu sync.RWMutex
	hooks   []Hook
	events  chan Event
	dropped atomic.Int64
	wg      sync.WaitGroup

	// health counts store health transitions: even = healthy, odd =
	// failing. A call snapshots it before it starts, so that only a call
	// that began after a failure can report the recovery and only a call
	// that began while healthy can report a failure: calls that finish out
	// of order under load never make the events flap.
	health    atomic.Uint64
	guard     guard       // deadline allowance, breaker, settle retries (network stores)
	admission *admission  // verification admission control, or nil
	cache     *blockCache // the block near-cache (network stores), or nil
	closeOnce sync.Once
	closed    atomic.Bool
}

// New returns a Defender that keeps its counters and blocks in store. cfg is
// validated (see Config.Validate); opts may be nil. The caller keeps
// ownership of store and closes it after Close.
func New(store backend.Backend, cfg Config, opts *Options) (*Defender, error) {
	if store == nil {
		return nil, errors.New("defender: New: store is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	d := &Defender{
		store:     store,
		cfg:       cfg,
		ttl:       cfg.attemptTTL(),
		lockouts:  cfg.lockoutTimes(),
		limitIP:   cfg.limitIP(),
		limitUser: cfg.limitUsername(),
		prefix:    cfg.CachePrefix,
		resolver:  o.Resolver,
		audit:     o.Audit,
		metrics:   o.Metrics,
		log:       o.Logger,
		now:       o.Now,
		hooks:     append([]Hook(nil), o.Hooks...),
		events:    make(chan Event, 1024),
		local:     o.Local,
	}
	if !cfg.StoreAccessAttempts {
		d.audit = nil
	}
	if d.audit != nil {
		switch d.audit.(type) {
		case *auditlog.Writer, *auditlog.Coalescer:
		default:
			d.auditIDs = true
		}
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.immediate = backend.IsImmediate(store)
	d.borrow = backend.BorrowsKeys(store) && (o.Local == nil || backend.BorrowsKeys(o.Local))
	d.admission = newAdmission(cfg)
	if len(cfg.AllowlistUsernames) > 0 {
		d.allowUser = make(map[string]struct{}, len(cfg.AllowlistUsernames))
		for _, u := range cfg.AllowlistUsernames {
			d.allowUser[CanonicalUsername(u)] = struct{}{}
		}
	}
	if d.audit != nil && cfg.AuditCoalesceWindow > 0 {
		c, err := auditlog.NewCoalescer(d.audit, cfg.AuditCoalesceWindow, &auditlog.CoalescerOptions{Now: d.now})
		if err != nil {
			return nil, fmt.Errorf("defender: %w", err)
		}
		d.audit, d.coalescer = c, c
	}
	if cfg.FailMode == FailLocal && d.local == nil {
		l, err := newLocalStore(d.now)
		if err != nil {
			return nil, fmt.Errorf("defender: local fail-mode store: %w", err)
		}
		d.local, d.ownLocal = l, true
	}
	if err := d.startCache(); err != nil {
		return nil, fmt.Errorf("defender: block cache: %w", err)
	}
	d.wg.Add(1)
	go d.dispatch()
	if !d.immediate {
		d.startGuard()
	}
	return d, nil
}

// Config returns the validated configuration in force.
func (d *Defender) Config() Config { return d.cfg }

// Canonical returns the canonical form of username (CanonicalUsername), then
// mapped by the Options.Resolver when one is set.
func (d *Defender) Canonical(ctx context.Context, username string) string {
	c := CanonicalUsername(username)
	if d.resolver != nil && c != "" {
		c = CanonicalUsername(d.resolver(ctx, c))
	}
	return c
}

// OnEvent adds a hook called on every later event (see Hook).
func (d *Defender) OnEvent(h Hook) {
	d.hooksMu.Lock()
	d.hooks = append(d.hooks, h)
	d.hooksMu.Unlock()
}

// Close stops the event dispatcher (after delivering the events already
// queued), hands the audit records it holds for coalescing to the audit
// recorder, and closes the local fallback store it created. It does not
// close the Backend given to New nor the audit recorder: close those after
// the Defender. Close is idempotent.
func (d *Defender) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		d.stopGuard()
		d.stopCache()
		close(d.events)
		d.wg.Wait()
		if d.coalescer != nil {
			err = d.coalescer.Close(context.Background())
		}
		if d.ownLocal {
			err = errors.Join(err, d.local.Close())
		}
	})
	return err
}

// DroppedEvents returns how many events were not delivered because hooks
// fell more than 1024 events behind (each drop is also logged).
func (d *Defender) DroppedEvents() int64 { return d.dropped.Load() }

func (d *Defender) dispatch() {
	defer d.wg.Done()
	for ev := range d.events {
		d.hooksMu.RLock()
		hooks := d.hooks
		d.hooksMu.RUnlock()
		for _, h := range hooks {
			d.callHook(h, ev)
		}
	}
}

func (d *Defender) callHook(h Hook, ev Event) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("defender: event hook panicked", "event", string(ev.Kind), "panic", fmt.Sprint(p))
		}
	}()
	h(ev)
}

func (d *Defender) emit(ev Event) {
	if d.closed.Load() {
		return
	}
	ev.Time = d.now()
	defer func() { _ = recover() }() // a send racing with Close
	select {
	case d.events <- ev:
	default:
		d.dropped.Add(1)
		d.log.Warn("defender: event dropped: hooks are too slow", "event", string(ev.Kind))
	}
}

// identify selects the identities counted for ip and the canonical user.
func (d *Defender) identify(ip netip.Addr, user string, dst *[2]identity) (n int, blocklisted bool) {
	ipOK := ip.IsValid() && !inPrefixes(d.cfg.AllowlistIPs, ip)
	if ipOK && len(d.cfg.BlocklistIPs) > 0 && inPrefixes(d.cfg.BlocklistIPs, ip) {
		return 0, true
	}
	userOK := user != ""
	if userOK && d.allowUser != nil {
		_, allowed := d.allowUser[user]
		userOK = !allowed
	}
	switch {
	case d.cfg.LockOutByIPAndUsername:
		if ipOK && userOK {
			dst[0] = identity{kind: KindPair, addr: ip, bits: d.cfg.IPv6Prefix, username: user, limit: int64(d.cfg.FailureLimit)}
			n = 1
		}
	default:
		if ipOK && !d.cfg.DisableIPLockout {
			dst[n] = identity{kind: KindIP, addr: ip, bits: d.cfg.IPv6Prefix, limit: d.limitIP}
			n++
		}
		if userOK && !d.cfg.DisableUsernameLockout {
			dst[n] = identity{kind: KindUsername, username: user, limit: d.limitUser}
			n++
		}
	}
	return n, false
}

// Check reports whether l is locked, without counting anything: for page
// views and any request that is not a login attempt. In pair mode a request
// without a username is never locked. A username longer than
// MaxUsernameBytes gives Refused; a ctx already done gives Abandoned.
func (d *Defender) Check(ctx context.Context, l Login) Decision {
	if checkUsername(l.Username) != nil {
		return Decision{Verdict: Refused, Err: ErrUsernameTooLong}
	}
	var ids [2]identity
	n, blocklisted := d.identify(l.IP, d.Canonical(ctx, l.Username), &ids)
	if blocklisted {
		return Decision{Verdict: Locked, Kind: KindIP, Blocklisted: true, Permanent: true}
	}
	if n == 0 {
		return Decision{}
	}
	if ctx.Err() != nil {
		return Decision{Verdict: Abandoned, Err: context.Cause(ctx)}
	}
	var cb *checkBuf
	if d.borrow {
		cb = checkPool.Get().(*checkBuf)
		defer checkPool.Put(cb)
	} else {
		cb = new(checkBuf)
	}
	b := cb.buf[:0]
	var ends [2]int
	for i := 0; i < n; i++ {
		b = appendKey(b, d.prefix, slotBlock, &ids[i])
		ends[i] = len(b)
	}
	from := 0
	for i := 0; i < n; i++ {
		cb.keys[i] = unsafe.String(&b[from], ends[i]-from)
		from = ends[i]
	}
	keys := cb.keys[:n]
	if dec, ok := d.fromCache(keys, ids[:n]); ok {
		return dec
	}
	gen := d.cacheGen()
	var start time.Time
	if d.metrics != nil {
		start = d.now()
	}
	var es []backend.Entry
	err := d.call(ctx, "check", start, func(sctx context.Context) (err error) {
		es, err = d.store.Get(sctx, keys)
		return err
	})
	if ctx.Err() != nil {
		return Decision{Verdict: Abandoned, Err: context.Cause(ctx)}
	}
	if err != nil {
		switch d.cfg.FailMode {
		case FailOpen:
			d.failModeUsed(FailOpen)
			return Decision{FailMode: FailOpen, Err: err}
		case FailLocal:
			d.failModeUsed(FailLocal)
			lctx, lcancel := d.localCtx(ctx)
			es, err = d.local.Get(lctx, keys)
			lcancel()
			if err != nil {
				return Decision{Verdict: Unavailable, FailMode: FailLocal, Err: err}
			}
			dec := lockedBy(es, ids[:n])
			dec.FailMode = FailLocal
			return dec
		default:
			d.failModeUsed(FailClosed)
			return Decision{Verdict: Unavailable, FailMode: FailClosed, Err: err}
		}
	}
	dec := lockedBy(es, ids[:n])
	if dec.Verdict == Locked {
		for i, e := range es {
			if e.Found {
				d.remember(keys[i], ids[i].kind, e.TTL, gen)
			}
		}
	}
	return dec
}

// localCtx bounds a call to FailLocal's in-process store, detached from
// ctx like storeCtx.
func (d *Defender) localCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d.cfg.StoreTimeout)
}

// checkBuf holds Check's keys in one allocation; the strings point into buf
// (pooled for a backend that borrows keys, see Attempt's keys).
type checkBuf struct {
	keys [2]string
	buf  [448]byte
}

func (d *Defender) failModeUsed(m FailMode) {
	if d.metrics != nil {
		d.metrics.FailMode(m)
	}
}

func lockedBy(es []backend.Entry, ids []identity) Decision {
	for i, e := range es {
		if e.Found {
			return Decision{Verdict: Locked, Kind: ids[i].kind, Permanent: e.TTL == 0, RetryAfter: e.TTL}
		}
	}
	return Decision{}
}

// Attempt checks l and, when it is not locked, reserves one attempt on each
// of its counters before the password is verified (reserve-before-verify):
// with limit N, at most N+1 attempts per identity reach verification in one
// counter window, however many arrive at once. The caller verifies the
// password only when a.Decision().Allowed(), then calls exactly one of
// a.Succeeded or a.Failed. Attempt never returns nil. On any other decision
// the attempt is already settled and recorded; calling Succeeded or Failed
// on it returns the same decision.
//
// A username longer than MaxUsernameBytes (after trimming) is refused
// without a password check: the attempt is counted as a failure of its IP
// (see Refuse) and decided Refused, or Locked when that failure blocks the
// IP. When ctx is done before the check or ends while the store answers,
// the attempt is Abandoned: the client is gone, so the password must not
// be checked; its reservation, if made, is refunded, and no fail mode
// applies. Store calls themselves are bounded by StoreTimeout only; ctx's
// cancellation never interrupts one half-way, so a client hanging up is
// never mistaken for a store outage.
func (d *Defender) Attempt(ctx context.Context, l Login) *Attempt {
	a := new(Attempt)
	d.AttemptInto(ctx, l, a)
	return a
}

// AttemptInto is Attempt into an Attempt the caller owns: a zero Attempt
// or one already settled, typically a local variable, so that the attempt
// allocates nothing (the state its reservation needs comes from a pool and
// goes back to it when the attempt is settled). It is the form for hot
// paths; the middleware uses it.
//
//	var a defender.Attempt
//	d.AttemptInto(ctx, login, &a)
//	if a.Decision().Allowed() { ... a.Failed(ctx) ... }
func (d *Defender) AttemptInto(ctx context.Context, l Login, a *Attempt) {
	a.release()
	*a = Attempt{d: d, login: l}
	if err := checkUsername(l.Username); err != nil {
		d.refuse(ctx, a, err)
		return
	}
	if d.metrics != nil {
		a.start = d.now()
	}
	a.user = d.Canonical(ctx, l.Username)
	d.reserve(ctx, a)
}

// Refuse settles a login that the application will not verify because the
// request is malformed or ambiguous (the middleware refuses a request whose
// username it cannot tell for certain, or is too long): it is counted as a
// failed attempt of l's IP, so that malformed requests are never free,
// recorded, and decided Refused (with reason as Decision.Err), or Locked
// when this failure blocks the IP. l.Username is recorded in the audit log
// as typed but never counted: it cannot be trusted.
func (d *Defender) Refuse(ctx context.Context, l Login, reason error) Decision {
	a := Attempt{d: d, login: l}
	d.refuse(ctx, &a, reason)
	return a.dec
}

// refuse settles a (its Login set) as refused for reason.
func (d *Defender) refuse(ctx context.Context, a *Attempt, reason error) {
	a.refused = reason
	if d.metrics != nil {
		a.start = d.now()
	}
	d.reserve(ctx, a)
	if !a.dec.Allowed() {
		return
	}
	dec := a.Failed(ctx)
	if dec.Verdict != Locked {
		a.dec = Decision{Verdict: Refused, Err: reason, FailMode: dec.FailMode}
	}
}

// reserve checks and reserves a for a.user (empty for a refused attempt)
// and sets a.dec.
func (d *Defender) reserve(ctx context.Context, a *Attempt) {
	a.st = statePool.Get().(*attemptState)
	n, blocklisted := d.identify(a.login.IP, a.user, &a.st.ids)
	a.n = n
	if blocklisted {
		a.finish(Decision{Verdict: Locked, Kind: KindIP, Blocklisted: true, Permanent: true})
		return
	}
	if n == 0 {
		a.release()
		a.dec = Decision{}
		return
	}
	if ctx.Err() != nil {
		a.abandon(ctx)
		return
	}
	// Build the 2n keys into one buffer; the strings point into it. A
	// backend that copies what it keeps (backend.KeyBorrower) is lent the
	// state's buffer, written again by a later attempt; any other gets a
	// buffer of its own, never written again.
	b := a.st.buf[:0]
	if !d.borrow {
		b = make([]byte, 0, len(a.st.buf))
	}
	var ends [4]int
	var starts [2]int
	for i := 0; i < n; i++ {
		starts[i] = len(b)
		b = appendKey(b, d.prefix, slotCounter, &a.st.ids[i])
		ends[i] = len(b)
	}
	// A block key is its counter key with another slot letter: copied,
	// not formatted again.
	for i := 0; i < n; i++ {
		at := len(b)
		b = append(b, b[starts[i]:ends[i]]...)
		b[at+len(d.prefix)+1] = slotBlock
		ends[n+i] = len(b)
	}
	from := 0
	for i := 0; i < 2*n; i++ {
		a.st.keys[i] = unsafe.String(&b[from], ends[i]-from)
		from = ends[i]
	}
	if dec, ok := d.fromCache(a.st.keys[n:2*n], a.st.ids[:n]); ok {
		a.finish(dec)
		return
	}
	d.waitResets(a.st.keys[:n])
	gen := d.cacheGen()
	a.st.res = backend.Reservation{
		Counters: a.st.keys[:n:n],
		Blocks:   a.st.keys[n : 2*n : 2*n],
		TTL:      d.ttl,
		TTLOnly:  true,
		Counts:   a.st.counts[:0],
	}
	a.store = d.store
	err := d.call(ctx, "reserve", a.start, func(sctx context.Context) error {
		return backend.Reserve(sctx, d.store, &a.st.res)
	})
	if err != nil {
		if ctx.Err() != nil {
			// The store failed (that was observed), but the client is
			// gone: no fail mode applies to nobody.
			a.store = nil
			a.abandon(ctx)
			return
		}
		switch d.cfg.FailMode {
		case FailOpen:
			d.failModeUsed(FailOpen)
			a.store = nil
			a.dec = Decision{FailMode: FailOpen, Err: err}
			return
		case FailLocal:
			d.failModeUsed(FailLocal)
			a.store = d.local
			a.failMode = FailLocal
			lctx, lcancel := d.localCtx(ctx)
			err = backend.Reserve(lctx, d.local, &a.st.res)
			lcancel()
			if err != nil {
				a.store = nil
				a.finish(Decision{Verdict: Unavailable, FailMode: FailLocal, Err: err})
				return
			}
		default:
			d.failModeUsed(FailClosed)
			a.store = nil
			a.finish(Decision{Verdict: Unavailable, FailMode: FailClosed, Err: err})
			return
		}
	}
	if ctx.Err() != nil {
		a.refund(ctx)
		a.abandon(ctx)
		return
	}
	if a.st.res.Blocked >= 0 && a.store == d.store {
		d.remember(a.st.res.Blocks[a.st.res.Blocked], a.st.ids[a.st.res.Blocked].kind, a.st.res.Block.TTL, gen)
	}
	a.dec = a.decide(ctx)
	if a.dec.Verdict != Allow {
		a.finish(a.dec)
	}
}

// abandon settles an attempt whose caller went away: nothing stays counted
// (the caller refunded any reservation), nothing is verified or recorded.
func (a *Attempt) abandon(ctx context.Context) {
	a.dec = Decision{Verdict: Abandoned, Err: context.Cause(ctx)}
	a.settled = true
	a.store = nil
	a.release()
	if a.d.metrics != nil {
		a.d.metrics.Attempt("abandoned")
	}
}

// refund takes back a reservation that will never be verified.
func (a *Attempt) refund(ctx context.Context) {
	d := a.d
	if a.store == nil || a.st.res.Blocked >= 0 || len(a.st.res.Counts) != a.n || a.n == 0 {
		return
	}
	if a.store == d.store {
		err := d.call(ctx, "settle", a.start, func(sctx context.Context) error {
			_, err := a.store.Incr(sctx, a.st.keys[:a.n], -1, d.ttl)
			return err
		})
		if errors.Is(err, errCircuitOpen) {
			d.retryLater(nil, a.st.keys[:a.n])
		}
	} else {
		lctx, cancel := d.localCtx(ctx)
		_, _ = a.store.Incr(lctx, a.st.keys[:a.n], -1, d.ttl)
		cancel()
	}
	a.store = nil
}

// decide turns the reservation into a decision.
func (a *Attempt) decide(ctx context.Context) Decision {
	r := &a.st.res
	if r.Blocked >= 0 {
		return Decision{Verdict: Locked, Kind: a.st.ids[r.Blocked].kind, Permanent: r.Block.TTL == 0, RetryAfter: r.Block.TTL, FailMode: a.failMode}
	}
	for i := 0; i < a.n && i < len(r.Counts); i++ {
		if r.Counts[i] > a.st.ids[i].limit+1 {
			// Past limit+1 without a block: a parallel burst outran the
			// block, or the attempt that should have set it never did
			// (its process died, or its block failed). Refuse without
			// verification, and make sure the block exists, so that
			// whatever refuses a login is a block the admin lists and
			// can remove. The block is conditional: the attempt that
			// reserved limit+1 may be setting it at the same moment.
			sctx, cancel := a.d.storeCtx(ctx)
			dec, ok := a.block(sctx, i, r.Counts[i])
			cancel()
			if !ok {
				d := a.d.lockouts[0]
				dec = Decision{Verdict: Locked, Kind: a.st.ids[i].kind, Permanent: d == 0, RetryAfter: d, Duration: d}
			}
			dec.FailMode = a.failMode
			return dec
		}
	}
	return Decision{FailMode: a.failMode}
}

// Attempt is one login attempt in progress (Defender.Attempt,
// Defender.AttemptInto). Settle it once. It must not be copied (go vet
// reports copies): use it through a pointer. It is not safe for concurrent
// use.
type Attempt struct {
	_        noCopy
	d        *Defender
	st       *attemptState // the reservation; nil once settled
	login    Login
	user     string
	refused  error // Refuse's reason: the username is not counted
	start    time.Time
	n        int
	store    backend.Backend // where the reservation was made; nil: nothing to settle
	failMode FailMode
	dec      Decision
	settled  bool
}

// attemptState is the part of an attempt that the store sees: pooled, so
// that an attempt allocates nothing.
type attemptState struct {
	ids    [2]identity
	keys   [4]string
	counts [2]int64
	res    backend.Reservation
	buf    [192]byte // typical keys fit; longer ones spill to the heap
}

var (
	statePool = sync.Pool{New: func() any { return new(attemptState) }}
	checkPool = sync.Pool{New: func() any { return new(checkBuf) }}
)

// release hands the attempt's state back to the pool: the attempt is
// settled and its keys are no longer used.
func (a *Attempt) release() {
	if a.st != nil {
		a.st.res = backend.Reservation{}
		statePool.Put(a.st)
		a.st = nil
	}
}

// moveTo moves the attempt into dst (which must be a zero Attempt); a is
// left settled and empty, so only dst settles it.
func (a *Attempt) moveTo(dst *Attempt) {
	dst.d, dst.st, dst.login, dst.user, dst.refused = a.d, a.st, a.login, a.user, a.refused
	dst.start, dst.n, dst.store, dst.failMode = a.start, a.n, a.store, a.failMode
	dst.dec, dst.settled = a.dec, a.settled
	a.st, a.store, a.settled = nil, nil, true
}

// noCopy makes go vet's copylocks check report copies of an Attempt.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// Decision is the answer of the check: verify the password only when
// Allowed.
func (a *Attempt) Decision() Decision { return a.dec }

// Username returns the canonical username the attempt is counted under.
func (a *Attempt) Username() string { return a.user }

// finish settles the attempt with dec and records it.
func (a *Attempt) finish(dec Decision) {
	a.dec = dec
	a.settled = true
	d := a.d
	outcome := "locked"
	if dec.Verdict == Unavailable {
		outcome = "unavailable"
	}
	if d.metrics != nil {
		d.metrics.Attempt(outcome)
	}
	a.record(false, dec.Verdict == Locked, dec.FailMode)
	a.release()
}

func (a *Attempt) record(success, locked bool, fm FailMode) {
	d := a.d
	if d.audit == nil {
		return
	}
	ip := ""
	if a.login.IP.IsValid() {
		ip = a.login.IP.String()
	}
	now := d.now().UTC()
	rec := auditlog.Record{
		Time:              now,
		IP:                ip,
		Username:          TrimUsername(a.login.Username),
		CanonicalUsername: a.user,
		UserAgent:         a.login.UserAgent,
		Path:              a.login.Path,
		Accept:            a.login.Accept,
		Success:           success,
		Locked:            locked,
		FailMode:          string(fm),
	}
	if a.refused != nil && !locked {
		rec.Refused = refusedReason(a.refused)
		rec.CanonicalUsername = ""
	}
	if d.auditIDs {
		rec.ID = auditlog.NewID(now)
	}
	d.audit.Record(rec.Truncate())
}

// Succeeded settles a verified, correct login: it resets the username and
// pair counters, and the IP counter when ResetIPOnSuccess is set (otherwise
// refunds the attempt's reservation on it), so that a successful login never
// counts as a failure anywhere. It records the attempt and returns the
// attempt's decision (Allow). A store error is reported in Decision.Err but
// does not change the verdict: the password was right. The store calls are
// made even when ctx is already done: the password was verified. On a
// network store the reset (deletes) is made in the background, so that a
// successful login waits for one store round trip, not two: a later
// attempt on the same counters in this process waits for it, and a reset
// that fails is made again until it is made (so Decision.Err stays nil).
func (a *Attempt) Succeeded(ctx context.Context) Decision {
	if a.settled {
		return a.dec
	}
	a.settled = true
	d := a.d
	if d.metrics != nil {
		d.metrics.Attempt("success")
	}
	if a.store != nil && a.st.res.Blocked < 0 && len(a.st.res.Counts) == a.n {
		// A counter that is reset is deleted; the IP counter is only
		// refunded when ResetIPOnSuccess is off. On an in-process store a
		// counter that only holds this attempt's reservation is refunded
		// instead (back to 0, key and TTL kept: the next attempt needs no
		// insert, so no allocation); on a network store a plain DEL is the
		// cheaper command.
		var del []string
		refundAll := d.immediate
		for i := 0; i < a.n; i++ {
			reset := a.st.ids[i].kind != KindIP || d.cfg.ResetIPOnSuccess
			if reset && a.st.res.Counts[i] > 1 {
				refundAll = false
			}
		}
		refund := a.st.keys[:a.n]
		if !refundAll {
			refund = nil
			for i := 0; i < a.n; i++ {
				reset := a.st.ids[i].kind != KindIP || d.cfg.ResetIPOnSuccess
				if reset && (a.st.res.Counts[i] > 1 || !d.immediate) {
					del = append(del, a.st.keys[i])
				} else {
					refund = append(refund, a.st.keys[i])
				}
			}
		}
		if len(refund) == 0 && a.store == d.store && !d.immediate && !d.guard.open.Load() && d.resetLater(del) {
			// A network store's reset is made in the background: the
			// password was right, the login need not wait for it.
			a.record(true, false, a.dec.FailMode)
			a.release()
			return a.dec
		}
		var start time.Time
		if d.metrics != nil {
			start = d.now()
		}
		deleted := false
		settle := func(sctx context.Context) error {
			if len(del) > 0 {
				if err := a.store.Delete(sctx, del...); err != nil {
					return err
				}
				deleted = true
			}
			if len(refund) > 0 {
				_, err := a.store.Incr(sctx, refund, -1, d.ttl)
				return err
			}
			return nil
		}
		var err error
		if a.store == d.store {
			err = d.call(ctx, "settle", start, settle)
		} else {
			lctx, cancel := d.localCtx(ctx)
			err = settle(lctx)
			cancel()
		}
		if err != nil {
			a.dec.Err = err
			if a.store == d.store && !d.immediate {
				// The reservation must not stay behind and add up to a
				// lockout: the deletes are made again until they are
				// made (they are idempotent); a refund only when it was
				// surely not made (the breaker was open).
				if deleted {
					del = nil
				}
				if !errors.Is(err, errCircuitOpen) {
					refund = nil
				}
				if len(del)+len(refund) > 0 {
					d.retryLater(del, refund)
				}
			}
		}
	}
	a.record(true, false, a.dec.FailMode)
	a.release()
	return a.dec
}

// refusedReason is the audit record's Refused field for a refusal's reason.
func refusedReason(err error) string {
	switch {
	case errors.Is(err, ErrUsernameTooLong):
		return "too_long"
	case errors.Is(err, errBodyTooLarge):
		return "too_large"
	case errors.Is(err, errShed):
		return "shed"
	}
	return "ambiguous"
}

// blockValue is what a block key holds: the failure count and the display
// form of the identity (a hashed username cannot be read back from its key).
type blockValue struct {
	Count    int64  `json:"c"`
	Username string `json:"u,omitempty"`
	IP       string `json:"i,omitempty"`
}

// Failed settles a verified, wrong login: the attempt stays counted, and
// each identity whose counter went past its limit is blocked for the
// duration its escalation selects (the lockout count is kept in the store).
// The returned Decision is Locked when this failure caused a block, so that
// failure limit+1 gets the lockout response; otherwise it is Allow (answer
// "wrong password"). The store calls are made even when ctx is already
// done: the password was verified.
func (a *Attempt) Failed(ctx context.Context) Decision {
	if a.settled {
		return a.dec
	}
	a.settled = true
	d := a.d
	dec := a.dec
	var bctx context.Context
	if a.store != nil && a.st.res.Blocked < 0 {
		for i := 0; i < a.n && i < len(a.st.res.Counts); i++ {
			count := a.st.res.Counts[i]
			if count <= a.st.ids[i].limit {
				continue
			}
			if bctx == nil {
				// One deadline for the whole settle: blocking two
				// identities never takes twice StoreTimeout.
				var cancel context.CancelFunc
				bctx, cancel = d.storeCtx(ctx)
				defer cancel()
			}
			bdec, ok := a.block(bctx, i, count)
			if !ok {
				// The counter is past the limit: later attempts are
				// refused as a burst (and set the block) until it
				// expires, so the identity stays locked.
				dur := d.lockouts[0]
				bdec = Decision{Verdict: Locked, Kind: a.st.ids[i].kind, Permanent: dur == 0, RetryAfter: dur, Duration: dur, Err: bdec.Err}
			}
			if bdec.Err != nil {
				dec.Err = bdec.Err
			}
			if dec.Verdict != Locked {
				dec.Verdict, dec.Kind = Locked, bdec.Kind
				dec.Permanent, dec.RetryAfter, dec.Duration = bdec.Permanent, bdec.RetryAfter, bdec.Duration
			}
		}
	}
	a.dec = dec
	if d.metrics != nil {
		if dec.Verdict == Locked {
			d.metrics.Attempt("locked")
		} else {
			d.metrics.Attempt("failure")
		}
	}
	a.record(false, dec.Verdict == Locked, dec.FailMode)
	a.release()
	return dec
}

// block blocks identity i of the attempt, whose counter reached count,
// unless a block is already there (then it reports that block), within the
// store context sctx (see storeCtx). ok is false when the store failed
// (dec.Err holds the error).
func (a *Attempt) block(sctx context.Context, i int, count int64) (dec Decision, ok bool) {
	d := a.d
	id := &a.st.ids[i]
	ipStr := id.ipString()
	req := backend.BlockRequest{
		BlockKey:    a.st.keys[a.n+i],
		CounterKey:  a.st.keys[i],
		LockoutsKey: id.key(d.prefix, slotLockouts),
		Window:      d.cfg.AccessAttemptExpiration,
		Durations:   d.lockouts,
		IfAbsent:    true,
		Value:       blockValueFor(count, id.username, ipStr),
	}
	start := d.now()
	gen := d.cacheGen()
	var res backend.BlockResult
	var err error
	if a.store == d.store {
		err = d.callIn(sctx, "block", start, func(sctx context.Context) (err error) {
			res, err = backend.Block(sctx, a.store, req)
			return err
		})
	} else {
		res, err = backend.Block(sctx, a.store, req)
	}
	if err != nil {
		return Decision{Err: err}, false
	}
	if !res.Existing {
		if d.metrics != nil {
			d.metrics.Block(id.kind)
		}
		d.emit(Event{Kind: blockEvent(id.kind), Identity: id.kind, IP: ipStr, Username: id.username,
			Duration: res.Duration, Permanent: res.Duration == 0, Count: count, Lockouts: res.Lockouts})
		d.log.Info("defender: blocked", "kind", string(id.kind), "ip", ipStr, "username", id.username,
			"duration", res.Duration, "count", count, "lockouts", res.Lockouts)
	}
	if a.store == d.store {
		d.remember(req.BlockKey, id.kind, res.Duration, gen)
	}
	dec = Decision{Verdict: Locked, Kind: id.kind, Permanent: res.Duration == 0, RetryAfter: res.Duration}
	if !res.Existing {
		dec.Duration = res.Duration
	}
	return dec, true
}

// blockValueFor encodes a block's value: the failure count and the display
// form of the identity.
func blockValueFor(count int64, username, ip string) []byte {
	v, _ := json.Marshal(blockValue{Count: count, Username: username, IP: ip})
	return v
}

func blockEvent(k Kind) EventKind {
	switch k {
	case KindIP:
		return EventIPBlocked
	case KindUsername:
		return EventUsernameBlocked
	}
	return EventPairBlocked
}
