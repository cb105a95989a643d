package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-defender/defender/auditlog"
	"github.com/go-defender/defender/auditlog/file"
)

// A username holding a newline and a forged record stays one field of one
// line.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "file-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "attempts.jsonl")
	s, err := file.New(path, file.Options{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	s.Write(context.Background(), []auditlog.Record{{
		ID:       "0000000000010123456789abcdef0123",
		Time:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		IP:       "203.0.113.7",
		Username: "bob\n{\"username\":\"admin\",\"login_valid\":true}",
	}})
	b, _ := os.ReadFile(path)
	fmt.Print(string(b))
	// Output:
	// {"id":"0000000000010123456789abcdef0123","time":"2026-01-02T03:04:05Z","ip":"203.0.113.7","username":"bob\n{\"username\":\"admin\",\"login_valid\":true}","user_agent":"","path":"","http_accept":"","login_valid":false,"locked":false}
}
