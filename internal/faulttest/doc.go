// Package faulttest holds defender's fault-injection, exactness, property
// and uniform-response tests. It is a nested module so that its test-only
// dependencies (github.com/Shopify/toxiproxy/v2, used as a library, and
// go.uber.org/goleak) stay out of the main module.
//
// Every test runs against real servers started by internal/testserver on
// loopback (redis-server, a Redis Cluster, memcached, FerretDB), with an
// in-process toxiproxy proxy between defender and the server where a fault
// is injected:
//
//   - cut: the proxy is disabled (connections closed, new ones refused);
//   - latency: every reply is delayed beyond Config.StoreTimeout;
//   - lost reply: the request reaches the server, the reply is dropped and
//     the connection reset (the count must not double);
//   - black hole: the server accepts and never answers;
//   - death mid-flood: the proxy or the server goes away during a flood.
//
// In every case the tests assert that each login decision returns within
// StoreTimeout plus a small margin, that no HTTP answer is a 500, that the
// fail mode (closed, open or local) decides as documented, that counting
// resumes on the shared store after recovery, and that no goroutine is left
// behind (goleak). The package has no non-test code.
package faulttest
