package prometheus_test

import (
	"fmt"
	"net/http"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/metrics/prometheus"
)

// Wiring the adapter into a Defender and serving /metrics.
func ExampleNew() {
	store, err := memory.New(nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	reg := promclient.NewRegistry()
	// Options.Store: the store's own statistics (evictions, ...);
	// Options.Audit: pass the *auditlog.Writer for the audit series.
	m, err := prometheus.New(reg, &prometheus.Options{Store: store})
	if err != nil {
		panic(err)
	}
	d, err := defender.New(store, defender.DefaultConfig(), &defender.Options{Metrics: m})
	if err != nil {
		panic(err)
	}
	defer d.Close()

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	fmt.Println("serving /metrics")
	// Output: serving /metrics
}
