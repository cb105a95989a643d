// Package peers benchmarks defender beside the Go rate limiters a site might
// use instead, on the same servers in the same run (docs/benchmarks.md:
// "per attempt (2 keys: IP and username) no slower than the best Go peer's
// single-key check"). It is a nested module so that the peers' code never
// enters the dependency graph of defender's users.
//
// Each peer does its nearest equivalent of one login check on one key:
//
//   - go-redis/redis_rate: Limiter.Allow (GCRA, one Lua script on Redis);
//   - ulule/limiter: Limiter.Get with its Redis store and its memory store;
//   - sethvargo/go-limiter: memorystore Take;
//   - throttled/throttled v2: GCRA RateLimitCtx with its go-redis v9 store
//     and its memory store.
//
// Beside them, on the same store: defender's whole attempt on 2 keys (IP
// and username: Attempt then Failed, the limit never reached) and its Check.
// Run with
//
//	cd bench/peers && go test -run '^$' -bench . -benchmem
//
// Names: BenchmarkPeers/<store>/<library>/<serial|parallel>.
package peers
