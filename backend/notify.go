package backend

import "context"

// Notifier is an optional interface for a store shared by several processes:
// it carries announcements that keys changed (a block was removed) to every
// process using the store, so that a process that keeps blocks in a cache in
// front of the store drops its copy at once instead of when the copy's own
// TTL runs out.
//
// Announcements are hints, not data: a subscriber that receives a key only
// forgets what it cached for it and reads the store again. Delivering a key
// that did not change costs one store read; missing an announcement leaves a
// stale entry, which is why a subscriber is told (onReset) whenever
// announcements may have been missed, and why a cache in front of the store
// still bounds the age of its entries.
//
// Announcements are scoped like keys: a backend with a key namespace (a
// prefix) announces to, and hears from, the backends of the same namespace
// on the same store only.
//
// conformance.RunNotifier is the executable specification of this
// interface.
type Notifier interface {
	// Notify announces keys to every subscriber of the store, in every
	// process, this one included, in one message. It is best effort: a nil
	// error means the store accepted the announcement, not that anyone
	// received it. Keys follow the key rules (ErrInvalid otherwise); no
	// keys is a no-op. A store error wraps ErrUnavailable (the caller may
	// retry: an announcement delivered twice is harmless); after Close,
	// Notify returns ErrClosed.
	Notify(ctx context.Context, keys ...string) error

	// Subscribe starts a subscription and returns at once, without waiting
	// for the store. From then on, until stop is called or the backend is
	// closed, it calls:
	//
	//   - onReset each time the subscription is established: the first
	//     time, and again after every interruption (a lost connection, a
	//     server restart, a failover). Announcements made before an onReset
	//     may have been missed; announcements made after it are delivered
	//     until the next one. A subscriber drops everything it cached when
	//     onReset runs, and may take the first onReset as the sign that the
	//     subscription is live.
	//   - onReset, too, after each attempt to subscribe that the store
	//     refused (an access-control rule, for example), while it keeps
	//     refusing: the store is up and changing, but its announcements do
	//     not arrive.
	//   - onKey once for each key of each announcement made by Notify in
	//     any process while the subscription is live, in the order of the
	//     announcement's keys. Announcements that one caller made one after
	//     the other are delivered in that order.
	//   - onReset once more, as the last call, when the backend is closed
	//     (or its connection to the store is closed for good): the
	//     subscription cannot be kept, and later announcements will be
	//     missed.
	//
	// The callbacks of one subscription run on one goroutine, one at a
	// time, in order. They must not block, and must not call stop or
	// Close. stop ends the subscription without calling onReset, waits for
	// the goroutine (no callback runs after stop returns) and is
	// idempotent. Close of the backend ends every subscription and waits
	// for them.
	//
	// Subscribe returns ErrInvalid when onKey or onReset is nil, and
	// ErrClosed after Close; an unreachable store is not an error (the
	// subscription is established when the store answers).
	Subscribe(onKey func(key string), onReset func()) (stop func(), err error)
}
