//go:build !unix

package auditlog

import "os"

// lockFile is a no-op where flock(2) does not exist: do not share a spool
// directory between writers there.
func lockFile(*os.File) error { return nil }
