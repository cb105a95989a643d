// Command ferretdb is a MongoDB wire-protocol server for the defender tests:
// FerretDB v1 embedded with its SQLite handler. It lives in its own module so
// that users of the defender library never inherit FerretDB's dependencies.
//
// Usage:
//
//	ferretdb -listen 127.0.0.1:27017 -dir /tmp/ferretdb-data
//
// It serves until SIGINT or SIGTERM, then closes its listener and the SQLite
// databases before exiting. internal/testserver builds and starts it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("dir", "", "directory for the SQLite databases (required)")
	verbose := flag.Bool("v", false, "log FerretDB's messages to stderr")
	flag.Parse()
	if err := run(*listen, *dir, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run(listen, dir string, verbose bool) error {
	if dir == "" {
		return fmt.Errorf("-dir is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	var w io.Writer = io.Discard
	if verbose {
		w = os.Stderr
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return f.Run(ctx)
}
