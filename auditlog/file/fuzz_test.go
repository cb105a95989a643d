package file_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
)

// FuzzEscaping: whatever the strings of a record, it is one line of the
// file and reads back as written (invalid UTF-8 aside, which the Writer
// replaces before any sink sees it).
func FuzzEscaping(f *testing.F) {
	for _, s := range []string{"", "bob", "a\nb", `{"id":"x"}` + "\n" + `{"id":"y"}`, "\r\u2028\u2029\x00", "<&>", `\"`, "名前"} {
		f.Add(s, s)
	}
	dir := f.TempDir()
	n := 0
	f.Fuzz(func(t *testing.T, user, agent string) {
		user, agent = strings.ToValidUTF8(user, "\uFFFD"), strings.ToValidUTF8(agent, "\uFFFD")
		n++
		path := filepath.Join(dir, "f"+strconv.Itoa(n))
		s, err := file.New(path, file.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		defer os.Remove(path)
		r := auditlog.Record{ID: auditlog.NewID(time.Now()), Time: time.Now().UTC(), Username: user, UserAgent: agent}
		if err := s.Write(t.Context(), []auditlog.Record{r}); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		if bytes.Count(raw, []byte{'\n'}) != 1 || raw[len(raw)-1] != '\n' {
			t.Fatalf("one record is not one line: %q", raw)
		}
		got, err := s.Query(t.Context(), auditlog.Filter{Username: user})
		if err != nil || len(got) != 1 || got[0].Username != user || got[0].UserAgent != agent {
			t.Fatalf("read back %+v, %v; want %q / %q", got, err, user, agent)
		}
	})
}
