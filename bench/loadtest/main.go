// Command loadtest is defender's published load test and benchmark report.
//
//	go run . [run flags]      drive the demo site (and the baselines) and write
//	                          loadtest.md, loadtest.json and PNG charts
//	go run . report [flags]   turn the go test -bench output of bench/ and
//	                          bench/peers into bench.md and charts
//	go run . axes-server ...  the django-axes-like baseline (started by run)
//	go run . bare-server ...  the bare 429 handler, the locked flood's
//	                          baseline (started by run)
//
// See docs/benchmarks.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "report" || args[0] == "axes-server" || args[0] == "bare-server") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runLoad(ctx, args, os.Stdout)
	case "report":
		err = runReport(args, os.Stdout)
	case "axes-server":
		err = runAxes(ctx, args, os.Stdout)
	case "bare-server":
		err = runBare(ctx, args, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadtest %s: %v\n", cmd, err)
		os.Exit(1)
	}
}
