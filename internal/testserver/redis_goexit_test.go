package testserver

import "runtime"

func goexit() { runtime.Goexit() }
