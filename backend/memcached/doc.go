// Package memcached is a defender backend on one or several Memcached
// servers, through github.com/bradfitz/gomemcache.
//
// (Full documentation: see the round-trip table, index design and eviction
// notes below; being written.)
package memcached
