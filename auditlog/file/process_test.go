package file_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
)

const (
	childPathEnv = "AUDITLOG_FILE_CHILD_PATH"
	childNameEnv = "AUDITLOG_FILE_CHILD_NAME"
)

// TestWriterChild is the child process of TestSeveralProcesses: it writes
// 1000 records, 10 per batch, with IDs derived from its name. Run on its
// own it does nothing.
func TestWriterChild(t *testing.T) {
	path, name := os.Getenv(childPathEnv), os.Getenv(childNameEnv)
	if path == "" {
		return // not the child
	}
	s, err := file.New(path, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 1000; i += 10 {
		var batch []auditlog.Record
		for j := i; j < i+10; j++ {
			at := time.Now().UTC()
			if j%5 == 0 {
				at = at.Add(-48 * time.Hour) // for the concurrent DeleteBefore to remove
			}
			batch = append(batch, auditlog.Record{ID: fmt.Sprintf("%s-%04d", name, j), Time: at, Username: name})
		}
		if err := s.Write(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSeveralProcesses: four processes append to one file while this one
// runs DeleteBefore over and over (each rewrite replaces the file under
// them): no line is torn or lost, the old records go, every new one is
// there once.
func TestSeveralProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attempts.jsonl")
	s := newSink(t, path, file.Options{})
	old := time.Now().Add(-48 * time.Hour)
	var olds []auditlog.Record
	for i := 0; i < 500; i++ {
		olds = append(olds, rec(old, "old"))
	}
	if err := s.Write(ctx(t), olds); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	done := make(chan error, 4)
	for p := 0; p < 4; p++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriterChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childPathEnv+"="+path, childNameEnv+"=p"+strconv.Itoa(p))
		out := &syncWriter{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		go func() {
			err := cmd.Wait()
			if err != nil {
				err = fmt.Errorf("%v: %s", err, out.String())
			}
			done <- err
		}()
	}
	t.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
		}
	})
	var deleted int64
	rewrites := 0
	for finished := 0; finished < len(cmds); {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child: %v", err)
			}
			finished++
		default:
			n, err := s.DeleteBefore(ctx(t), time.Now().Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			deleted += n
			if n > 0 {
				rewrites++
			}
		}
	}
	n, err := s.DeleteBefore(ctx(t), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	deleted += n
	count := map[string]int{}
	for _, r := range lines(t, path) {
		count[r.ID]++
	}
	bad := 0
	for p := 0; p < 4; p++ {
		for j := 0; j < 1000; j++ {
			want := 1
			if j%5 == 0 {
				want = 0
			}
			if count[fmt.Sprintf("p%d-%04d", p, j)] != want {
				bad++
			}
		}
	}
	t.Logf("4 processes x 1000 records (200 of each old), %d old records deleted in %d rewrites meanwhile; %d records left; %d missing, duplicated or not deleted", deleted, rewrites, len(count), bad)
	if bad != 0 || deleted != 500+800 || len(count) != 3200 {
		t.Error("want the 1300 old records deleted and each of the 3200 new ones once")
	}
}

type syncWriter struct {
	b []byte
}

func (w *syncWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *syncWriter) String() string              { return string(w.b) }
