// Package faulttest holds defender's fault-injection, exactness, property,
// uniform-response and hostile-input tests. It is a nested module so that
// its test-only dependencies (github.com/Shopify/toxiproxy/v2, used as a
// library, and go.uber.org/goleak) stay out of the main module. It has no
// non-test code.
//
// Every test runs against real servers started by internal/testserver on
// loopback (redis-server, a three-master Redis Cluster shared by the whole
// test binary, memcached, FerretDB), with an in-process toxiproxy proxy
// between defender and the server where a fault is injected:
//
//   - down: the proxy is disabled (connections closed, new ones refused);
//   - reset: connections are reset as a request arrives;
//   - hang / black hole: the server accepts and never answers;
//   - latency: every reply is delayed beyond Config.StoreTimeout;
//   - lost reply: the write reaches the server, its reply is lost and the
//     connection reset (the count must not double);
//   - death mid-flood: the proxy is cut or the server killed during 1000
//     concurrent logins, and brought back.
//
// In every case the tests assert that each login decision returns within
// StoreTimeout plus a margin, that no HTTP answer is a 500, that the fail
// mode (closed, open or local) decides as documented, that the events and
// the fail-mode metric report the outage, that counting resumes on the
// shared store after recovery, and (TestMain, with goleak) that no
// goroutine outlives the tests.
//
// Besides faults: TestExactness (1000 concurrent failures per identity on
// every backend), TestNoImmortalKeys and TestBoltKill9 (random sequences,
// then every key's lifetime; for bolt a child process killed with SIGKILL),
// TestUniformResponses and the lock-check benchmarks (existing and unknown
// users answered alike), and the fuzz targets FuzzOpenStoreURL (every
// backend registered) and FuzzAdminRequests.
//
// FAULTTEST_SEED replays a property test's seed. The bugs these tests found
// (event flapping, a Memcached call outliving its deadline, admin input
// taken for an outage) are fixed; their tests run by default.
// docs/hardening.md ("Faults: what happens when") summarises the results.
package faulttest
