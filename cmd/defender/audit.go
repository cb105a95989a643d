package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/go-defender/defender/auditlog"
)

// defaultSpoolDir holds audit records while the sink is down, in the
// working directory.
const defaultSpoolDir = "defender-audit-spool"

// audit is an open audit sink and the asynchronous writer in front of it.
type audit struct {
	sink  auditlog.Sink
	rec   *auditlog.Writer
	close func()
}

// openAudit opens the sink named by raw and starts its writer. setting
// names the flag or variable raw came from, for error messages.
func openAudit(ctx context.Context, raw, setting string, log *slog.Logger) (*audit, error) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sink, err := auditlog.Open(octx, raw)
	if err != nil {
		if errors.Is(err, auditlog.ErrInvalidURL) {
			return nil, fmt.Errorf("%s: %w", setting, err)
		}
		return nil, fmt.Errorf("opening audit log %s: %w", auditlog.Redact(raw), err)
	}
	spool, err := filepath.Abs(defaultSpoolDir)
	if err != nil {
		sink.Close()
		return nil, err
	}
	w, err := auditlog.NewWriter(sink, auditlog.WriterOptions{SpoolDir: spool, Logger: log})
	if err != nil {
		sink.Close()
		return nil, fmt.Errorf("audit spool %s: %w", spool, err)
	}
	return &audit{sink: sink, rec: w, close: func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.Close(cctx); err != nil {
			log.Error("demo: closing the audit writer", "err", err)
		}
		sink.Close()
	}}, nil
}
