// Package bench holds defender's benchmarks; it has no API. Everything lives
// in its _test.go files and runs with
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// BenchmarkBackend runs conformance.Bench, the benchmark of the login path
// that third-party backends run too, on every backend (memory, bolt, Redis
// standalone, Redis Cluster, Memcached): the engine's four login operations,
// serially and under b.RunParallel, as BenchmarkBackend/<store>/<op>/<mode>:
//
//   - Check: Defender.Check, the lookup of a page view (one Get of the IP
//     and username block keys).
//   - Failure: Attempt then Failed on identities far below the limit (the
//     limit is 2^30 and 4096 IPs and usernames rotate), so no block is
//     ever set: check + reserve + settle of a wrong password.
//   - Success: Attempt then Succeeded (counters reset or refunded).
//   - Attempt: the whole login as the HTTP middleware performs it, half
//     successes and half failures.
//
// The floors of docs/benchmarks.md are measured in the same run
// (BenchmarkFloor): a mutex-guarded map checking 2 keys and incrementing 2
// counters (conformance.MutexMapFloor), a go-redis PING (standalone and
// cluster), a Memcached get round trip, and bbolt View, Update (fsync) and
// Batch. BenchmarkKeyMemory reports the bytes each tracked key costs in each
// store (metric B/key).
//
// Servers (redis-server, memcached) are started on free loopback ports by
// internal/testserver the first time a benchmark needs them and stopped when
// the test binary exits, so `make test` (which runs no benchmark) starts
// none. BenchmarkPaired runs conformance.BenchPaired: each operation
// interleaved with its store's floor in one loop; the latency ratios of the
// targets are judged on it. The ratios are computed from the raw output by
// `go run . report` in bench/loadtest (see docs/benchmarks.md).
package bench
