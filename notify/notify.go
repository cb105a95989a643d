package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/go-defender/defender/defender"
)

// Lookup returns the e-mail address of the account whose canonical
// username is given, and whether there is such an account. It is called on
// a notifier worker with a deadline (Options.Timeout).
type Lookup func(ctx context.Context, username string) (addr string, ok bool)

// DefaultSubject and DefaultBody are the message templates used when
// Options leaves them empty.
const (
	DefaultSubject = `Sign-in to {{.Site}} blocked after failed attempts`
	DefaultBody    = `Hello,

There were {{.Count}} failed attempts to sign in to {{.Site}} as "{{.Username}}"{{if .IP}} from {{.IP}}{{end}}.
{{if .Permanent}}Sign-in for this account is now blocked until an administrator unblocks it.
{{else}}Sign-in for this account is blocked for {{.DurationText}} (until {{.Until.Format "2006-01-02 15:04 MST"}}).
{{end}}
If this was you, {{if .Permanent}}contact an administrator{{else}}wait and try again{{end}}.
If it was not you, someone may be trying to guess your password: consider
changing it once you can sign in again.

This message never contains your password, and nobody from {{.Site}} will
ever ask you for it.
`
)

// Defaults of Options.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultWorkers     = 2
	DefaultQueue       = 64
	DefaultMinInterval = 15 * time.Minute
)

// maxTracked bounds the per-username rate-limit memory.
const maxTracked = 10000

// Options tunes a Notifier. The zero value (or nil) is valid.
type Options struct {
	// Subject and Body are text/template sources executed with a Data.
	// Empty: DefaultSubject, DefaultBody.
	Subject, Body string
	// Site names the application in the default templates (Data.Site).
	// Empty: "your account".
	Site string
	// Timeout bounds one notification: lookup, rendering and sending.
	// 0: DefaultTimeout.
	Timeout time.Duration
	// Workers is the number of concurrent deliveries. 0: DefaultWorkers.
	Workers int
	// Queue is the number of notifications waiting for a worker; past it
	// they are dropped and counted (Stats.Dropped). 0: DefaultQueue.
	Queue int
	// MinInterval is the least time between two messages to one username;
	// later blocks within it are counted (Stats.Suppressed) and not mailed.
	// 0: DefaultMinInterval; negative: no limit.
	MinInterval time.Duration
	// Logger receives one line per failed or dropped notification. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Data is what the templates receive.
type Data struct {
	// Site is Options.Site.
	Site string
	// Username is the blocked canonical username.
	Username string
	// IP is the address (or IPv6 prefix) of a blocked pair; empty for a
	// username block.
	IP string
	// Count is the number of failures that caused the block.
	Count int64
	// Permanent reports a block without expiry.
	Permanent bool
	// Duration is the block's duration (0 when Permanent), and
	// DurationText says it in words ("5 minutes").
	Duration     time.Duration
	DurationText string
	// Time is when the block was set; Until when it ends (Time when
	// Permanent).
	Time, Until time.Time
}

// Stats counts notifications since New.
type Stats struct {
	// Sent were delivered to the Sender without error.
	Sent int64
	// Failed could not be rendered or sent (including a panicking Lookup
	// or Sender).
	Failed int64
	// Unknown were for usernames Lookup does not know: not mailed.
	Unknown int64
	// Suppressed came within MinInterval of the previous message to the
	// same username.
	Suppressed int64
	// Dropped found the queue full, or came after Close.
	Dropped int64
}

// ErrOptions is wrapped by New's errors.
var ErrOptions = errors.New("notify: invalid options")

// Notifier e-mails the owner of a blocked username. Create it with New,
// subscribe Hook with defender.Defender.OnEvent, Close it on shutdown.
type Notifier struct {
	sender  Sender
	lookup  Lookup
	subject *template.Template
	body    *template.Template
	site    string
	timeout time.Duration
	minGap  time.Duration
	log     *slog.Logger
	now     func() time.Time

	mu     sync.Mutex
	closed bool
	last   map[string]time.Time
	queue  chan defender.Event
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent, failed, unknown, suppressed, dropped atomic.Int64
}

// New returns a Notifier that sends through sender to the addresses lookup
// finds, and starts its workers. sender and lookup are required; opts may
// be nil. The templates are parsed here.
func New(sender Sender, lookup Lookup, opts *Options) (*Notifier, error) {
	if sender == nil || lookup == nil {
		return nil, fmt.Errorf("%w: sender and lookup are required", ErrOptions)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout < 0 || o.Workers < 0 || o.Queue < 0 {
		return nil, fmt.Errorf("%w: negative Timeout, Workers or Queue", ErrOptions)
	}
	n := &Notifier{
		sender:  sender,
		lookup:  lookup,
		site:    or(o.Site, "your account"),
		timeout: o.Timeout,
		minGap:  o.MinInterval,
		log:     o.Logger,
		now:     o.Now,
		last:    make(map[string]time.Time),
	}
	if n.timeout == 0 {
		n.timeout = DefaultTimeout
	}
	if n.minGap == 0 {
		n.minGap = DefaultMinInterval
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.now == nil {
		n.now = time.Now
	}
	var err error
	if n.subject, err = template.New("subject").Option("missingkey=error").Parse(or(o.Subject, DefaultSubject)); err != nil {
		return nil, fmt.Errorf("%w: Subject: %w", ErrOptions, err)
	}
	if n.body, err = template.New("body").Option("missingkey=error").Parse(or(o.Body, DefaultBody)); err != nil {
		return nil, fmt.Errorf("%w: Body: %w", ErrOptions, err)
	}
	workers, queue := o.Workers, o.Queue
	if workers == 0 {
		workers = DefaultWorkers
	}
	if queue == 0 {
		queue = DefaultQueue
	}
	n.queue = make(chan defender.Event, queue)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(workers)
	for range workers {
		go n.work()
	}
	return n, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Hook queues a message for a username or pair block event and ignores
// every other event. It never blocks: it is a defender.Hook.
func (n *Notifier) Hook(ev defender.Event) {
	if (ev.Kind != defender.EventUsernameBlocked && ev.Kind != defender.EventPairBlocked) || ev.Username == "" {
		return
	}
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		n.dropped.Add(1)
		return
	}
	if n.minGap > 0 {
		if t, ok := n.last[ev.Username]; ok && now.Sub(t) < n.minGap {
			n.suppressed.Add(1)
			return
		}
	}
	select {
	case n.queue <- ev:
		if n.minGap > 0 {
			n.remember(ev.Username, now)
		}
	default:
		n.dropped.Add(1)
		n.log.Warn("notify: queue full, block notification dropped", slog.String("username", ev.Username))
	}
}

// remember notes a message to username, keeping the map bounded.
func (n *Notifier) remember(username string, now time.Time) {
	if len(n.last) >= maxTracked {
		for u, t := range n.last {
			if now.Sub(t) >= n.minGap {
				delete(n.last, u)
			}
		}
		if len(n.last) >= maxTracked {
			clear(n.last)
		}
	}
	n.last[username] = now
}

func (n *Notifier) work() {
	defer n.wg.Done()
	for ev := range n.queue {
		n.deliver(ev)
	}
}

// deliver looks the owner up and sends one message, within the timeout.
func (n *Notifier) deliver(ev defender.Event) {
	ctx, cancel := context.WithTimeout(n.ctx, n.timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			n.failed.Add(1)
			n.log.Error("notify: panic while notifying", slog.String("username", ev.Username), slog.Any("panic", p))
		}
	}()
	addr, ok := n.lookup(ctx, ev.Username)
	if !ok || strings.TrimSpace(addr) == "" {
		n.unknown.Add(1)
		return
	}
	msg, err := n.render(addr, ev)
	if err == nil {
		err = n.sender.Send(ctx, msg)
	}
	if err != nil {
		n.failed.Add(1)
		n.log.Warn("notify: block notification failed", slog.String("username", ev.Username), slog.Any("error", err))
		return
	}
	n.sent.Add(1)
}

// render executes the templates for ev.
func (n *Notifier) render(to string, ev defender.Event) (Message, error) {
	t := ev.Time
	if t.IsZero() {
		t = n.now()
	}
	d := Data{
		Site:      n.site,
		Username:  ev.Username,
		Count:     ev.Count,
		Permanent: ev.Permanent,
		Time:      t,
		Until:     t,
	}
	if ev.Kind == defender.EventPairBlocked {
		d.IP = ev.IP
	}
	if !ev.Permanent {
		d.Duration = ev.Duration
		d.DurationText = durationText(ev.Duration)
		d.Until = t.Add(ev.Duration)
	}
	var subj, body strings.Builder
	if err := n.subject.Execute(&subj, d); err != nil {
		return Message{}, fmt.Errorf("notify: Subject template: %w", err)
	}
	if err := n.body.Execute(&body, d); err != nil {
		return Message{}, fmt.Errorf("notify: Body template: %w", err)
	}
	return Message{To: to, Subject: subj.String(), Body: body.String()}, nil
}

// durationText says d in words, rounded to the largest fitting unit below a
// day: "45 seconds", "5 minutes", "1 hour 30 minutes", "2 days".
func durationText(d time.Duration) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d < time.Minute:
		return unit(int64((d+time.Second-1)/time.Second), "second")
	case d < time.Hour:
		return unit(int64((d+time.Minute-1)/time.Minute), "minute")
	case d < 24*time.Hour:
		h, m := int64(d/time.Hour), int64((d%time.Hour+time.Minute-1)/time.Minute)
		if m == 0 {
			return unit(h, "hour")
		}
		if m == 60 {
			return unit(h+1, "hour")
		}
		return unit(h, "hour") + " " + unit(m, "minute")
	default:
		return unit(int64((d+24*time.Hour-1)/(24*time.Hour)), "day")
	}
}

// Stats returns the counts so far.
func (n *Notifier) Stats() Stats {
	return Stats{
		Sent:       n.sent.Load(),
		Failed:     n.failed.Load(),
		Unknown:    n.unknown.Load(),
		Suppressed: n.suppressed.Load(),
		Dropped:    n.dropped.Load(),
	}
}

// Shutdown stops accepting events and waits for the queued notifications
// to be delivered, or for ctx to be done: then in-flight deliveries are
// cancelled and what is still queued fails fast. It returns ctx.Err() when
// it had to cancel. Later calls return at once.
func (n *Notifier) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.queue)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return ctx.Err()
	}
}

// Close is Shutdown without a deadline other than each message's Timeout.
func (n *Notifier) Close() error { return n.Shutdown(context.Background()) }
