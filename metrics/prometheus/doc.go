// Package prometheus exports defender's measurements to Prometheus
// (github.com/prometheus/client_golang). It lives in its own package so that
// applications that do not use Prometheus never import it.
//
// New registers the collectors and returns a defender.Metrics to pass in
// defender.Options.Metrics:
//
//	m, err := prometheus.New(promclient.DefaultRegisterer, &prometheus.Options{Audit: auditWriter})
//	d, err := defender.New(store, cfg, &defender.Options{Metrics: m})
//
// Metric names (namespace "defender" by default):
//
//	defender_attempts_total{outcome}            success, failure, locked, unavailable
//	defender_blocks_total{kind}                 ip, username, pair
//	defender_unblocks_total{kind}               admin unblocks
//	defender_store_call_duration_seconds{op}    histogram: reserve, check, block, settle, admin
//	defender_store_errors_total{op}             failed store calls
//	defender_fail_mode_total{mode}              decisions taken by the fail mode: closed, open, local
//	defender_audit_queue_depth                  audit records in memory, not yet delivered or spooled
//	defender_audit_spool_pending                audit records spooled to disk, waiting for the sink
//	defender_audit_spool_bytes                  disk used by the spool
//	defender_audit_delivered_total              audit records the sink accepted
//	defender_audit_spooled_total                audit records written to the spool
//	defender_audit_dropped_total                audit records lost (spool full or failed)
//	defender_audit_sink_errors_total            failed sink calls
//
// With Options.Store set to a store that reports statistics of its own
// (prometheus.StoreStats: *memory.Store, *memcached.Store), each one is
// exported as defender_store_<name>, read at scrape time, for example:
//
//	defender_store_keys, defender_store_max_keys    memory: keys held, bound
//	defender_store_pinned_keys                      memory: blocks and lockout counts held
//	defender_store_evictions_total                  memory: failure counters evicted (failures forgotten)
//	defender_store_refused_total                    memory: new blocks refused, their share full
//	defender_store_conn_drops_total                 memcached: idle connections dropped after a server restart
//	defender_store_server_evictions                 memcached: the servers' eviction counters
//
// Alert on the evictions and refusals: both mean MaxKeys (or the Memcached
// memory) is too small for the traffic, or a flood is under way.
//
// The audit series exist only when Options.Audit is set; they are read from
// it at scrape time. Every label value is one of a small fixed set, so the
// series count is bounded whatever the traffic.
package prometheus
