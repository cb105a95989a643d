package memcached

import (
	"testing"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/conformance"
	"github.com/go-defender/defender/internal/testserver"
)

func TestConformanceSingle(t *testing.T) {
	addr := testserver.StartMemcached(t)
	conformance.Run(t, func(t *testing.T) backend.Backend {
		return newStore(t, nil, addr)
	})
}

func TestConformancePool(t *testing.T) {
	_, addrs := startPool(t, 3)
	conformance.Run(t, func(t *testing.T) backend.Backend {
		return newStore(t, nil, addrs...)
	})
}
