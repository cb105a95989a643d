//go:build !linux

package testserver

import "os/exec"

// dieWithParent does nothing where Pdeathsig does not exist.
func dieWithParent(cmd *exec.Cmd) {}
