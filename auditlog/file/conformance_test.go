package file_test

import (
	"path/filepath"
	"testing"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
	"github.com/go-defender/defender/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunSink(t, func(t *testing.T) auditlog.Sink {
		s, err := file.New(filepath.Join(t.TempDir(), "attempts.jsonl"), file.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
