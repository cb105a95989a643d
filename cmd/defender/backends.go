package main

// Every backend and audit sink registers its URL scheme; the CLI is the only
// place that imports them all.
import (
	_ "github.com/go-defender/defender/auditlog/file"
	_ "github.com/go-defender/defender/auditlog/mongo"
	_ "github.com/go-defender/defender/backend/bolt"
	_ "github.com/go-defender/defender/backend/memcached"
	_ "github.com/go-defender/defender/backend/memory"
	_ "github.com/go-defender/defender/backend/redis"
)
