// Package stacktest holds whole-stack tests and benchmarks of defender on
// the Redis backend: the engine's fail modes against a real redis-server
// that goes away and comes back, and login attempts measured against a
// go-redis PING in the same run. It has no non-test code.
package stacktest
