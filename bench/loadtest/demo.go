package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rootDir finds the defender repository: the nearest parent of dir whose
// go.mod declares module github.com/go-defender/defender.
func rootDir(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/go-defender/defender\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("no parent directory holds the go.mod of github.com/go-defender/defender (use -root)")
		}
	}
}

// buildDemo builds cmd/defender of root into dir and returns the binary.
func buildDemo(root, dir string) (string, error) {
	bin := filepath.Join(dir, "defender")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/defender")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/defender: %v\n%s", err, out)
	}
	return bin, nil
}

// server is a login site under test: the demo or the axes-like baseline,
// as a child process.
type server struct {
	base string
	dir  string // the working directory
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
	once sync.Once
}

// startServer runs bin with args (and extra environment) in dir, waits for
// the line announcing "listening on URL" and for /healthz (or /login) to
// answer.
func startServer(bin string, args, env []string, dir string) (*server, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logBuf := &bytes.Buffer{}
	cmd.Stderr = &limitedWriter{w: logBuf, n: 64 << 10}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{dir: dir, cmd: cmd, done: make(chan struct{}), log: logBuf}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if _, u, ok := strings.Cut(line, "listening on "); ok && !sent {
				urlc <- strings.TrimSpace(u)
				sent = true
			}
		}
		if !sent {
			close(urlc)
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	select {
	case u, ok := <-urlc:
		if !ok {
			<-s.done
			return nil, fmt.Errorf("%s exited without listening: %s", filepath.Base(bin), logBuf.String())
		}
		s.base = u
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s did not announce its address within 30s: %s", filepath.Base(bin), logBuf.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(s.base + "/login")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s does not answer: %v", s.base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 5 seconds. Calls
// after the first wait for the first to finish.
func (s *server) stop() {
	s.once.Do(func() {
		if s.cmd.Process == nil {
			return
		}
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.n {
		q = q[:l.n]
	}
	l.n -= len(q)
	_, err := l.w.Write(q)
	return len(p), err
}
