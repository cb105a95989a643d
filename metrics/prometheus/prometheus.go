package prometheus

import (
	"errors"
	"fmt"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/defender"
)

// DefaultBuckets are the store call latency buckets, in seconds: 50µs to
// about 1.6s, doubling, covering an in-process store up to a slow network
// store past its timeout.
var DefaultBuckets = promclient.ExponentialBuckets(50e-6, 2, 16)

// AuditStats is what the audit gauges read: an *auditlog.Writer.
type AuditStats interface {
	Stats() auditlog.Stats
}

// StoreStats is a store that reports statistics of its own (the memory
// store's evictions, the Memcached store's dropped connections, ...):
// *memory.Store and *memcached.Store implement it. EachStat must call fn
// with the same names, in the same order, on every call; counter tells a
// value that only grows from one that goes up and down.
type StoreStats interface {
	EachStat(fn func(name, help string, counter bool, value float64))
}

// Options tunes New. The zero value (or nil) is valid.
type Options struct {
	// Namespace prefixes every metric name. Empty: "defender".
	Namespace string
	// ConstLabels are added to every series, for example to tell two
	// Defenders in one process apart.
	ConstLabels promclient.Labels
	// Buckets of the store latency histogram, in seconds. Nil:
	// DefaultBuckets.
	Buckets []float64
	// Audit, when set, is read at scrape time for the audit queue and spool
	// series.
	Audit AuditStats
	// Store, when set, is read at scrape time: each statistic it reports
	// becomes the series <namespace>_store_<name>, a counter or a gauge as
	// it says. Pass the store given to defender.New when it implements
	// StoreStats.
	Store StoreStats
}

// ErrRegister wraps the registry's error when New cannot register (for
// example a second Metrics with the same namespace and labels).
var ErrRegister = errors.New("prometheus: cannot register defender metrics")

// Metrics is a defender.Metrics that updates Prometheus collectors. It is
// safe for concurrent use; its methods do not allocate for the label values
// defender uses.
type Metrics struct {
	attempts    *promclient.CounterVec
	blocks      *promclient.CounterVec
	unblocks    *promclient.CounterVec
	storeDur    *promclient.HistogramVec
	storeErrors *promclient.CounterVec
	failMode    *promclient.CounterVec
	cacheHits   *promclient.CounterVec

	// Pre-resolved children for the fixed label values.
	attemptBy  map[string]promclient.Counter
	blockBy    map[defender.Kind]promclient.Counter
	unblockBy  map[defender.Kind]promclient.Counter
	durBy      map[string]promclient.Observer
	errBy      map[string]promclient.Counter
	failModeBy map[defender.FailMode]promclient.Counter
	cacheBy    map[defender.Kind]promclient.Counter
}

var (
	_ defender.Metrics      = (*Metrics)(nil)
	_ defender.CacheMetrics = (*Metrics)(nil)
)

// Label values defender uses (defender.Metrics' documentation).
var (
	outcomes  = []string{"success", "failure", "locked", "unavailable", "shed", "abandoned"}
	kinds     = []defender.Kind{defender.KindIP, defender.KindUsername, defender.KindPair}
	ops       = []string{"reserve", "check", "block", "settle", "admin", "probe"}
	failModes = []defender.FailMode{defender.FailClosed, defender.FailOpen, defender.FailLocal}
)

// New creates the collectors, registers them with reg (nil:
// promclient.DefaultRegisterer) and returns the Metrics to pass in
// defender.Options.Metrics. Every series of the fixed label values exists
// from the start, at zero. On a registration error nothing stays
// registered.
func New(reg promclient.Registerer, opts *Options) (*Metrics, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if reg == nil {
		reg = promclient.DefaultRegisterer
	}
	if o.Namespace == "" {
		o.Namespace = "defender"
	}
	if o.Buckets == nil {
		o.Buckets = DefaultBuckets
	}
	counter := func(name, help, label string) *promclient.CounterVec {
		return promclient.NewCounterVec(promclient.CounterOpts{
			Namespace: o.Namespace, Name: name, Help: help, ConstLabels: o.ConstLabels,
		}, []string{label})
	}
	m := &Metrics{
		attempts:    counter("attempts_total", "Login attempts by outcome: success, failure, locked, unavailable, shed, abandoned.", "outcome"),
		cacheHits:   counter("block_cache_answers_total", "Locked requests answered by the block near-cache without a store call, by identity kind.", "kind"),
		blocks:      counter("blocks_total", "Blocks set, by identity kind: ip, username, pair.", "kind"),
		unblocks:    counter("unblocks_total", "Admin unblocks, by identity kind.", "kind"),
		storeErrors: counter("store_errors_total", "Failed store calls, by operation.", "op"),
		failMode:    counter("fail_mode_total", "Decisions taken by the fail mode while the store failed: closed, open, local.", "mode"),
		storeDur: promclient.NewHistogramVec(promclient.HistogramOpts{
			Namespace: o.Namespace, Name: "store_call_duration_seconds", ConstLabels: o.ConstLabels,
			Help:    "Store call latency, by operation: reserve, check, block, settle, admin, probe.",
			Buckets: o.Buckets,
		}, []string{"op"}),
		attemptBy:  map[string]promclient.Counter{},
		blockBy:    map[defender.Kind]promclient.Counter{},
		unblockBy:  map[defender.Kind]promclient.Counter{},
		durBy:      map[string]promclient.Observer{},
		errBy:      map[string]promclient.Counter{},
		failModeBy: map[defender.FailMode]promclient.Counter{},
		cacheBy:    map[defender.Kind]promclient.Counter{},
	}
	for _, v := range outcomes {
		m.attemptBy[v] = m.attempts.WithLabelValues(v)
	}
	for _, k := range kinds {
		m.blockBy[k] = m.blocks.WithLabelValues(string(k))
		m.unblockBy[k] = m.unblocks.WithLabelValues(string(k))
		m.cacheBy[k] = m.cacheHits.WithLabelValues(string(k))
	}
	for _, op := range ops {
		m.durBy[op] = m.storeDur.WithLabelValues(op)
		m.errBy[op] = m.storeErrors.WithLabelValues(op)
	}
	for _, f := range failModes {
		m.failModeBy[f] = m.failMode.WithLabelValues(string(f))
	}
	cs := []promclient.Collector{m.attempts, m.blocks, m.unblocks, m.storeDur, m.storeErrors, m.failMode, m.cacheHits}
	if o.Audit != nil {
		cs = append(cs, newAuditCollector(o.Namespace, o.ConstLabels, o.Audit))
	}
	if o.Store != nil {
		cs = append(cs, newStoreCollector(o.Namespace, o.ConstLabels, o.Store))
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("%w: %w", ErrRegister, err)
		}
	}
	return m, nil
}

// Attempt counts a decided login attempt by outcome.
func (m *Metrics) Attempt(outcome string) {
	if c, ok := m.attemptBy[outcome]; ok {
		c.Inc()
		return
	}
	m.attempts.WithLabelValues(outcome).Inc()
}

// Block counts a block set on an identity of kind.
func (m *Metrics) Block(kind defender.Kind) {
	if c, ok := m.blockBy[kind]; ok {
		c.Inc()
		return
	}
	m.blocks.WithLabelValues(string(kind)).Inc()
}

// Unblock counts an admin unblock of an identity of kind.
func (m *Metrics) Unblock(kind defender.Kind) {
	if c, ok := m.unblockBy[kind]; ok {
		c.Inc()
		return
	}
	m.unblocks.WithLabelValues(string(kind)).Inc()
}

// StoreCall observes a store call's latency and counts it as an error when
// err is not nil.
func (m *Metrics) StoreCall(op string, d time.Duration, err error) {
	if o, ok := m.durBy[op]; ok {
		o.Observe(d.Seconds())
	} else {
		m.storeDur.WithLabelValues(op).Observe(d.Seconds())
	}
	if err == nil {
		return
	}
	if c, ok := m.errBy[op]; ok {
		c.Inc()
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

// BlockCacheAnswer implements defender.CacheMetrics: it counts a locked
// request answered by the block near-cache.
func (m *Metrics) BlockCacheAnswer(kind defender.Kind) {
	if c, ok := m.cacheBy[kind]; ok {
		c.Inc()
	}
}

// FailMode counts a decision taken by the fail mode.
func (m *Metrics) FailMode(mode defender.FailMode) {
	if c, ok := m.failModeBy[mode]; ok {
		c.Inc()
		return
	}
	m.failMode.WithLabelValues(string(mode)).Inc()
}

// auditCollector reads an AuditStats once per scrape.
type auditCollector struct {
	src                                                                 AuditStats
	depth, pending, spoolBytes, delivered, spooled, dropped, sinkErrors *promclient.Desc
}

func newAuditCollector(ns string, labels promclient.Labels, src AuditStats) *auditCollector {
	desc := func(name, help string) *promclient.Desc {
		return promclient.NewDesc(promclient.BuildFQName(ns, "audit", name), help, nil, labels)
	}
	return &auditCollector{
		src:        src,
		depth:      desc("queue_depth", "Audit records in memory, not yet delivered or spooled."),
		pending:    desc("spool_pending", "Audit records spooled to disk, waiting for the sink."),
		spoolBytes: desc("spool_bytes", "Disk space used by the audit spool."),
		delivered:  desc("delivered_total", "Audit records the sink accepted."),
		spooled:    desc("spooled_total", "Audit records written to the spool."),
		dropped:    desc("dropped_total", "Audit records lost because the spool was full or failed."),
		sinkErrors: desc("sink_errors_total", "Failed audit sink calls."),
	}
}

// Describe sends the audit series' descriptions.
func (c *auditCollector) Describe(ch chan<- *promclient.Desc) {
	for _, d := range []*promclient.Desc{c.depth, c.pending, c.spoolBytes, c.delivered, c.spooled, c.dropped, c.sinkErrors} {
		ch <- d
	}
}

// Collect reads the stats once and sends every audit series.
func (c *auditCollector) Collect(ch chan<- promclient.Metric) {
	s := c.src.Stats()
	gauge := func(d *promclient.Desc, v float64) {
		ch <- promclient.MustNewConstMetric(d, promclient.GaugeValue, v)
	}
	counter := func(d *promclient.Desc, v float64) {
		ch <- promclient.MustNewConstMetric(d, promclient.CounterValue, v)
	}
	gauge(c.depth, float64(s.Queued))
	gauge(c.pending, float64(s.Pending))
	gauge(c.spoolBytes, float64(s.SpoolBytes))
	counter(c.delivered, float64(s.Delivered))
	counter(c.spooled, float64(s.Spooled))
	counter(c.dropped, float64(s.Dropped))
	counter(c.sinkErrors, float64(s.SinkErrors))
}

// storeCollector reads a StoreStats once per scrape.
type storeCollector struct {
	src   StoreStats
	descs map[string]*promclient.Desc
	order []*promclient.Desc
}

// newStoreCollector learns the store's statistics (names, help, kind) from
// one EachStat call.
func newStoreCollector(ns string, labels promclient.Labels, src StoreStats) *storeCollector {
	c := &storeCollector{src: src, descs: map[string]*promclient.Desc{}}
	src.EachStat(func(name, help string, _ bool, _ float64) {
		d := promclient.NewDesc(promclient.BuildFQName(ns, "store", name), help, nil, labels)
		c.descs[name] = d
		c.order = append(c.order, d)
	})
	return c
}

// Describe sends the store series' descriptions.
func (c *storeCollector) Describe(ch chan<- *promclient.Desc) {
	for _, d := range c.order {
		ch <- d
	}
}

// Collect reads the store's statistics once and sends every series it
// described.
func (c *storeCollector) Collect(ch chan<- promclient.Metric) {
	c.src.EachStat(func(name, _ string, counter bool, v float64) {
		d, ok := c.descs[name]
		if !ok {
			return
		}
		t := promclient.GaugeValue
		if counter {
			t = promclient.CounterValue
		}
		ch <- promclient.MustNewConstMetric(d, t, v)
	})
}
