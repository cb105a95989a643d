package faulttest

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the tests, then (unless a test re-executed this binary as a
// crash child) checks that no goroutine outlived them.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(boltChild())
	}
	goleak.VerifyTestMain(m)
}

// childEnv is set when the test binary runs as a bolt crash child.
const childEnv = "FAULTTEST_BOLT_CHILD"

func boltChild() int { return 0 }
