//go:build !unix

package file

import "os"

// Without flock(2), DeleteBefore is not safe against writers in other
// processes.
func flock(*os.File, bool) error { return nil }
func funlock(*os.File)           {}
