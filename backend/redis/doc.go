// Package redis is the defender storage backend on Redis (standalone,
// Sentinel and Cluster), built on github.com/redis/go-redis/v9.
package redis
