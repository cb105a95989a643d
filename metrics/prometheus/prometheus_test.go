package prometheus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/metrics/prometheus"
)

// scrape returns the text exposition of reg through promhttp.
func scrape(t *testing.T, reg *promclient.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// expect checks that every line is in the exposition.
func expect(t *testing.T, text string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("missing %q in:\n%s", l, text)
		}
	}
}

type auditStats auditlog.Stats

func (s auditStats) Stats() auditlog.Stats { return auditlog.Stats(s) }

func TestMethods(t *testing.T) {
	reg := promclient.NewRegistry()
	m, err := prometheus.New(reg, &prometheus.Options{
		Audit: auditStats{Queued: 3, Pending: 4, SpoolBytes: 500, Delivered: 10, Spooled: 6, Dropped: 2, SinkErrors: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Attempt("success")
	m.Attempt("failure")
	m.Attempt("failure")
	m.Attempt("other") // not a fixed value: still counted
	m.Block(defender.KindIP)
	m.Block("weird")
	m.Unblock(defender.KindPair)
	m.Unblock("weird")
	m.StoreCall("reserve", 2*time.Millisecond, nil)
	m.StoreCall("reserve", 3*time.Millisecond, errors.New("down"))
	m.StoreCall("scan", time.Millisecond, errors.New("down"))
	m.FailMode(defender.FailOpen)
	m.FailMode("weird")
	m.BlockCacheAnswer(defender.KindUsername)
	m.BlockCacheAnswer("weird") // not a fixed value: not counted
	m.Attempt("shed")
	text := scrape(t, reg)
	expect(t, text,
		`defender_block_cache_answers_total{kind="username"} 1`,
		`defender_block_cache_answers_total{kind="ip"} 0`,
		`defender_attempts_total{outcome="shed"} 1`,
		`defender_attempts_total{outcome="abandoned"} 0`,
		`defender_attempts_total{outcome="success"} 1`,
		`defender_attempts_total{outcome="failure"} 2`,
		`defender_attempts_total{outcome="locked"} 0`,
		`defender_attempts_total{outcome="unavailable"} 0`,
		`defender_attempts_total{outcome="other"} 1`,
		`defender_blocks_total{kind="ip"} 1`,
		`defender_blocks_total{kind="username"} 0`,
		`defender_blocks_total{kind="weird"} 1`,
		`defender_unblocks_total{kind="pair"} 1`,
		`defender_unblocks_total{kind="weird"} 1`,
		`defender_store_call_duration_seconds_count{op="reserve"} 2`,
		`defender_store_call_duration_seconds_sum{op="reserve"} 0.005`,
		`defender_store_call_duration_seconds_bucket{op="reserve",le="0.0032"} 2`,
		`defender_store_call_duration_seconds_bucket{op="reserve",le="0.0016"} 0`,
		`defender_store_call_duration_seconds_count{op="scan"} 1`,
		`defender_store_errors_total{op="reserve"} 1`,
		`defender_store_errors_total{op="check"} 0`,
		`defender_store_errors_total{op="scan"} 1`,
		`defender_fail_mode_total{mode="open"} 1`,
		`defender_fail_mode_total{mode="closed"} 0`,
		`defender_fail_mode_total{mode="weird"} 1`,
		`defender_audit_queue_depth 3`,
		`defender_audit_spool_pending 4`,
		`defender_audit_spool_bytes 500`,
		`defender_audit_delivered_total 10`,
		`defender_audit_spooled_total 6`,
		`defender_audit_dropped_total 2`,
		`defender_audit_sink_errors_total 1`,
		`# TYPE defender_audit_queue_depth gauge`,
		`# TYPE defender_audit_dropped_total counter`,
		`# TYPE defender_store_call_duration_seconds histogram`,
	)
}

func TestOptions(t *testing.T) {
	reg := promclient.NewRegistry()
	_, err := prometheus.New(reg, &prometheus.Options{
		Namespace:   "login",
		ConstLabels: promclient.Labels{"site": "a"},
		Buckets:     []float64{0.001, 0.01},
	})
	if err != nil {
		t.Fatal(err)
	}
	text := scrape(t, reg)
	expect(t, text,
		`login_attempts_total{outcome="success",site="a"} 0`,
		`login_store_call_duration_seconds_bucket{op="check",site="a",le="0.01"} 0`,
	)
	if strings.Contains(text, "audit") {
		t.Fatal("audit series without Options.Audit")
	}
	// The same names again: an error, and nothing of the second left behind.
	_, err = prometheus.New(reg, &prometheus.Options{
		Namespace: "login", ConstLabels: promclient.Labels{"site": "a"},
		Audit: auditStats{},
	})
	if !errors.Is(err, prometheus.ErrRegister) {
		t.Fatalf("err %v", err)
	}
	// Another site label registers fine next to the first.
	if _, err := prometheus.New(reg, &prometheus.Options{Namespace: "login", ConstLabels: promclient.Labels{"site": "b"}}); err != nil {
		t.Fatal(err)
	}
	// A partial failure unregisters what it registered: the audit collector
	// clashes after the engine collectors went in.
	reg2 := promclient.NewRegistry()
	if err := reg2.Register(promclient.NewGauge(promclient.GaugeOpts{Name: "x_audit_queue_depth", Help: "x"})); err != nil {
		t.Fatal(err)
	}
	if _, err := prometheus.New(reg2, &prometheus.Options{Namespace: "x", Audit: auditStats{}}); !errors.Is(err, prometheus.ErrRegister) {
		t.Fatalf("err %v", err)
	}
	if _, err := prometheus.New(reg2, &prometheus.Options{Namespace: "x"}); err != nil {
		t.Fatalf("collectors left registered: %v", err)
	}
}

func TestDefaultRegisterer(t *testing.T) {
	m, err := prometheus.New(nil, &prometheus.Options{Namespace: "defender_default_test"})
	if err != nil {
		t.Fatal(err)
	}
	m.Attempt("success")
	mfs, err := promclient.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "defender_default_test_attempts_total"
	}
	if !found {
		t.Fatal("not registered with the default registerer")
	}
	if _, err := prometheus.New(nil, &prometheus.Options{Namespace: "defender_default_test"}); !errors.Is(err, prometheus.ErrRegister) {
		t.Fatalf("err %v", err)
	}
}

// TestWithDefender: the engine feeds the adapter; a scrape shows it.
func TestWithDefender(t *testing.T) {
	reg := promclient.NewRegistry()
	m, err := prometheus.New(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := defender.DefaultConfig()
	d, err := defender.New(st, cfg, &defender.Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	l := defender.Login{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice"}
	for i := 0; i < 4; i++ {
		a := d.Attempt(ctx, l)
		if a.Decision().Allowed() {
			a.Failed(ctx)
		}
	}
	d.Attempt(ctx, l) // locked
	if _, err := d.UnblockUsername(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	a := d.Attempt(ctx, defender.Login{IP: netip.MustParseAddr("192.0.2.2"), Username: "bob"})
	a.Succeeded(ctx)
	text := scrape(t, reg)
	expect(t, text,
		`defender_attempts_total{outcome="failure"} 3`, // the 4th failure blocked: "locked"
		`defender_attempts_total{outcome="locked"} 2`,
		`defender_attempts_total{outcome="success"} 1`,
		`defender_blocks_total{kind="ip"} 1`,
		`defender_blocks_total{kind="username"} 1`,
		`defender_unblocks_total{kind="username"} 1`,
		`defender_store_errors_total{op="reserve"} 0`,
	)
}

// TestStoreStats exports the memory store's own statistics, read at
// scrape time, with their kinds.
func TestStoreStats(t *testing.T) {
	store, err := memory.New(&memory.Options{MaxKeys: 32, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg := promclient.NewRegistry()
	if _, err := prometheus.New(reg, &prometheus.Options{Store: store}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := store.Incr(context.Background(), []string{"k" + strconv.Itoa(i)}, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, scrape(t, reg),
		"# TYPE defender_store_evictions_total counter",
		"defender_store_evictions_total 8",
		"# TYPE defender_store_keys gauge",
		"defender_store_keys 32",
		"defender_store_max_keys 32",
		"defender_store_pinned_keys 0",
		"defender_store_max_pinned_keys 24",
		"defender_store_refused_total 0",
	)
}

// shiftyStats reports a statistic at scrape time that it did not report
// when the collector was built: it is left out.
type shiftyStats struct{ calls int }

func (s *shiftyStats) EachStat(fn func(name, help string, counter bool, value float64)) {
	s.calls++
	fn("kept", "Kept.", false, 1)
	if s.calls > 1 {
		fn("late", "Late.", true, 2)
	}
}

func TestStoreStatsUnknownName(t *testing.T) {
	reg := promclient.NewRegistry()
	if _, err := prometheus.New(reg, &prometheus.Options{Namespace: "x", Store: &shiftyStats{}}); err != nil {
		t.Fatal(err)
	}
	text := scrape(t, reg)
	expect(t, text, "x_store_kept 1")
	if strings.Contains(text, "x_store_late") {
		t.Fatalf("an undeclared statistic was exported:\n%s", text)
	}
}
