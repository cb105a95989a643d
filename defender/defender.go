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
	metrics   Metrics
	log       *slog.Logger
	now       func() time.Time
	immediate bool // store never blocks on I/O: no per-call deadline

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
	closeOnce sync.Once
	closed    atomic.Bool
}

// immediateBackend is implemented by in-process backends whose calls never
// wait for I/O; the engine then skips the per-call deadline (and its
// allocations).
type immediateBackend interface{ Immediate() bool }

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
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if im, ok := store.(immediateBackend); ok && im.Immediate() {
		d.immediate = true
	}
	if len(cfg.AllowlistUsernames) > 0 {
		d.allowUser = make(map[string]struct{}, len(cfg.AllowlistUsernames))
		for _, u := range cfg.AllowlistUsernames {
			d.allowUser[CanonicalUsername(u)] = struct{}{}
		}
	}
	if cfg.FailMode == FailLocal && d.local == nil {
		l, err := newLocalStore(d.now)
		if err != nil {
			return nil, fmt.Errorf("defender: local fail-mode store: %w", err)
		}
		d.local, d.ownLocal = l, true
	}
	d.wg.Add(1)
	go d.dispatch()
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
// queued) and the local fallback store it created. It does not close the
// Backend given to New nor the audit recorder. Close is idempotent.
func (d *Defender) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		close(d.events)
		d.wg.Wait()
		if d.ownLocal {
			err = d.local.Close()
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

// storeCtx bounds a store call by StoreTimeout.
func (d *Defender) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.immediate {
		return ctx, nop
	}
	return context.WithTimeout(ctx, d.cfg.StoreTimeout)
}

func nop() {}

// observe records the outcome of a call to the shared store that started
// at start, when the health generation was gen.
func (d *Defender) observe(op string, start time.Time, gen uint64, err error) {
	if d.metrics != nil {
		d.metrics.StoreCall(op, d.now().Sub(start), err)
	}
	if err == nil {
		if gen%2 == 1 && d.health.CompareAndSwap(gen, gen+1) {
			d.log.Info("defender: store recovered")
			d.emit(Event{Kind: EventStoreRecovered})
		}
		return
	}
	if gen%2 == 0 && d.health.CompareAndSwap(gen, gen+1) {
		d.log.Error("defender: store failed", "op", op, "err", err, "fail_mode", string(d.cfg.FailMode))
		d.emit(Event{Kind: EventStoreFailed, Err: err})
	}
}

// observing reports whether a call's outcome must be observed: always with
// metrics, on errors, and while the store is failing (to see it recover).
func (d *Defender) observing(gen uint64, err error) bool {
	return d.metrics != nil || err != nil || gen%2 == 1
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
// without a username is never locked.
func (d *Defender) Check(ctx context.Context, l Login) Decision {
	var ids [2]identity
	n, blocklisted := d.identify(l.IP, d.Canonical(ctx, l.Username), &ids)
	if blocklisted {
		return Decision{Verdict: Locked, Kind: KindIP, Blocklisted: true, Permanent: true}
	}
	if n == 0 {
		return Decision{}
	}
	cb := new(checkBuf)
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
	gen := d.health.Load()
	var start time.Time
	if d.metrics != nil {
		start = d.now()
	}
	sctx, cancel := d.storeCtx(ctx)
	es, err := d.store.Get(sctx, keys)
	cancel()
	if d.observing(gen, err) {
		d.observe("check", start, gen, err)
	}
	if err != nil {
		switch d.cfg.FailMode {
		case FailOpen:
			d.failModeUsed(FailOpen)
			return Decision{FailMode: FailOpen, Err: err}
		case FailLocal:
			d.failModeUsed(FailLocal)
			lctx, lcancel := context.WithTimeout(ctx, d.cfg.StoreTimeout)
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
	return lockedBy(es, ids[:n])
}

// checkBuf holds Check's keys in one allocation; the strings point into buf,
// which is never written again once they are made.
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
// a.Succeeded or a.Failed. Attempt never returns nil. On a locked or
// unavailable decision the attempt is already settled and recorded; calling
// Succeeded or Failed on it returns the same decision.
func (d *Defender) Attempt(ctx context.Context, l Login) *Attempt {
	a := &Attempt{d: d, login: l}
	if d.metrics != nil {
		a.start = d.now()
	}
	a.user = d.Canonical(ctx, l.Username)
	n, blocklisted := d.identify(l.IP, a.user, &a.ids)
	a.n = n
	if blocklisted {
		a.finish(Decision{Verdict: Locked, Kind: KindIP, Blocklisted: true, Permanent: true})
		return a
	}
	if n == 0 {
		a.dec = Decision{}
		return a
	}
	// Build the 2n keys into one buffer owned by the attempt; the strings
	// point into it and the buffer is never written again.
	b := a.buf[:0]
	var ends [4]int
	for i := 0; i < n; i++ {
		b = appendKey(b, d.prefix, slotCounter, &a.ids[i])
		ends[i] = len(b)
	}
	for i := 0; i < n; i++ {
		b = appendKey(b, d.prefix, slotBlock, &a.ids[i])
		ends[n+i] = len(b)
	}
	from := 0
	for i := 0; i < 2*n; i++ {
		a.keys[i] = unsafe.String(&b[from], ends[i]-from)
		from = ends[i]
	}
	a.res = backend.Reservation{
		Counters: a.keys[:n:n],
		Blocks:   a.keys[n : 2*n : 2*n],
		TTL:      d.ttl,
		Counts:   a.counts[:0],
	}
	a.store = d.store
	gen := d.health.Load()
	sctx, cancel := d.storeCtx(ctx)
	err := backend.Reserve(sctx, d.store, &a.res)
	cancel()
	if d.observing(gen, err) {
		d.observe("reserve", a.start, gen, err)
	}
	if err != nil {
		switch d.cfg.FailMode {
		case FailOpen:
			d.failModeUsed(FailOpen)
			a.store = nil
			a.dec = Decision{FailMode: FailOpen, Err: err}
			return a
		case FailLocal:
			d.failModeUsed(FailLocal)
			a.store = d.local
			a.failMode = FailLocal
			lctx, lcancel := context.WithTimeout(ctx, d.cfg.StoreTimeout)
			err = backend.Reserve(lctx, d.local, &a.res)
			lcancel()
			if err != nil {
				a.finish(Decision{Verdict: Unavailable, FailMode: FailLocal, Err: err})
				return a
			}
		default:
			d.failModeUsed(FailClosed)
			a.finish(Decision{Verdict: Unavailable, FailMode: FailClosed, Err: err})
			return a
		}
	}
	a.dec = a.decide()
	if a.dec.Verdict != Allow {
		a.finish(a.dec)
	}
	return a
}

// decide turns the reservation into a decision.
func (a *Attempt) decide() Decision {
	r := &a.res
	if r.Blocked >= 0 {
		return Decision{Verdict: Locked, Kind: a.ids[r.Blocked].kind, Permanent: r.Block.TTL == 0, RetryAfter: r.Block.TTL, FailMode: a.failMode}
	}
	for i := 0; i < a.n && i < len(r.Counts); i++ {
		if r.Counts[i] > a.ids[i].limit+1 {
			// A parallel burst outran the block: refuse without
			// verification. The block itself is set by the attempt that
			// reserved count limit+1.
			d := a.d.lockouts[0]
			return Decision{Verdict: Locked, Kind: a.ids[i].kind, Permanent: d == 0, RetryAfter: d, Duration: d, FailMode: a.failMode}
		}
	}
	return Decision{FailMode: a.failMode}
}

// Attempt is one login attempt in progress. It is not safe for concurrent
// use; settle it once.
type Attempt struct {
	d        *Defender
	login    Login
	user     string
	start    time.Time
	ids      [2]identity
	n        int
	keys     [4]string
	counts   [2]int64
	res      backend.Reservation
	store    backend.Backend // where the reservation was made; nil: nothing to settle
	failMode FailMode
	dec      Decision
	settled  bool
	buf      [160]byte // typical keys fit; longer ones spill to the heap
}

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
	d.audit.Record(auditlog.Record{
		ID:        auditlog.NewID(now),
		Time:      now,
		IP:        ip,
		Username:  TrimUsername(a.login.Username),
		UserAgent: a.login.UserAgent,
		Path:      a.login.Path,
		Accept:    a.login.Accept,
		Success:   success,
		Locked:    locked,
		FailMode:  string(fm),
	}.Truncate())
}

// Succeeded settles a verified, correct login: it resets the username and
// pair counters, and the IP counter when ResetIPOnSuccess is set (otherwise
// refunds the attempt's reservation on it), so that a successful login never
// counts as a failure anywhere. It records the attempt and returns the
// attempt's decision (Allow). A store error is reported in Decision.Err but
// does not change the verdict: the password was right.
func (a *Attempt) Succeeded(ctx context.Context) Decision {
	if a.settled {
		return a.dec
	}
	a.settled = true
	d := a.d
	if d.metrics != nil {
		d.metrics.Attempt("success")
	}
	if a.store != nil && a.res.Blocked < 0 && len(a.res.Counts) == a.n {
		// A counter that is reset is deleted; the IP counter is only
		// refunded when ResetIPOnSuccess is off. On an in-process store a
		// counter that only holds this attempt's reservation is refunded
		// instead (back to 0, key and TTL kept: the next attempt needs no
		// insert, so no allocation); on a network store a plain DEL is the
		// cheaper command.
		var del []string
		refundAll := d.immediate
		for i := 0; i < a.n; i++ {
			reset := a.ids[i].kind != KindIP || d.cfg.ResetIPOnSuccess
			if reset && a.res.Counts[i] > 1 {
				refundAll = false
			}
		}
		refund := a.keys[:a.n]
		if !refundAll {
			refund = nil
			for i := 0; i < a.n; i++ {
				reset := a.ids[i].kind != KindIP || d.cfg.ResetIPOnSuccess
				if reset && (a.res.Counts[i] > 1 || !d.immediate) {
					del = append(del, a.keys[i])
				} else {
					refund = append(refund, a.keys[i])
				}
			}
		}
		gen := d.health.Load()
		var start time.Time
		if d.metrics != nil {
			start = d.now()
		}
		sctx, cancel := d.storeCtx(ctx)
		var err error
		if len(del) > 0 {
			err = a.store.Delete(sctx, del...)
		}
		if err == nil && len(refund) > 0 {
			_, err = a.store.Incr(sctx, refund, -1, d.ttl)
		}
		cancel()
		if a.store == d.store && d.observing(gen, err) {
			d.observe("settle", start, gen, err)
		}
		if err != nil {
			a.dec.Err = err
		}
	}
	a.record(true, false, a.dec.FailMode)
	return a.dec
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
// "wrong password").
func (a *Attempt) Failed(ctx context.Context) Decision {
	if a.settled {
		return a.dec
	}
	a.settled = true
	d := a.d
	dec := a.dec
	var bctx context.Context
	var bcancel context.CancelFunc
	if a.store != nil && a.res.Blocked < 0 {
		for i := 0; i < a.n && i < len(a.res.Counts); i++ {
			id := &a.ids[i]
			count := a.res.Counts[i]
			if count <= id.limit {
				continue
			}
			ipStr := id.ipString()
			req := backend.BlockRequest{
				BlockKey:    a.keys[a.n+i],
				CounterKey:  a.keys[i],
				LockoutsKey: id.key(d.prefix, slotLockouts),
				Window:      d.cfg.AccessAttemptExpiration,
				Durations:   d.lockouts,
			}
			req.Value = blockValueFor(count, id.username, ipStr)
			gen := d.health.Load()
			start := d.now()
			if bctx == nil {
				// One deadline for the whole settle: blocking two
				// identities never takes twice StoreTimeout.
				bctx, bcancel = d.storeCtx(ctx)
				defer bcancel()
			}
			res, err := backend.Block(bctx, a.store, req)
			if a.store == d.store {
				d.observe("block", start, gen, err)
			}
			if err != nil {
				// The counter is past the limit: later attempts are
				// refused as a burst until it expires, so the identity
				// stays locked even without its block.
				dec.Err = err
				res.Duration = d.lockouts[0]
			} else {
				if d.metrics != nil {
					d.metrics.Block(id.kind)
				}
				d.emit(Event{Kind: blockEvent(id.kind), Identity: id.kind, IP: ipStr, Username: id.username,
					Duration: res.Duration, Permanent: res.Duration == 0, Count: count, Lockouts: res.Lockouts})
				d.log.Info("defender: blocked", "kind", string(id.kind), "ip", ipStr, "username", id.username,
					"duration", res.Duration, "count", count, "lockouts", res.Lockouts)
			}
			if dec.Verdict != Locked {
				dec.Verdict, dec.Kind = Locked, id.kind
				dec.Permanent, dec.RetryAfter, dec.Duration = res.Duration == 0, res.Duration, res.Duration
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
	return dec
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
