package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-defender/defender/internal/testserver"
)

// bin is the defender binary, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	if b := os.Getenv("DEFENDER_TEST_BIN"); b != "" {
		// A prebuilt binary, e.g. an older version, to show that a test
		// fails there.
		bin = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "defender-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "defender")
	out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the defender binary: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the test process's environment without any DEFENDER_*
// variable, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEFENDER_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// result is a finished command.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the binary to completion in dir.
func runCLI(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv(env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running defender %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// demo is a running `defender demo`.
type demo struct {
	t      *testing.T
	cmd    *exec.Cmd
	URL    string // http://127.0.0.1:port
	Dir    string
	stdout strings.Builder
	stderr *lockedBuffer
	done   chan error
	once   sync.Once
	exit   error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listenRE = regexp.MustCompile(`defender demo listening on (http://\S+)`)

// startDemo starts the demo on a free port in dir (a new temp dir when
// empty) with the given environment and flags; it is stopped (SIGINT) when
// the test ends, and must exit 0.
func startDemo(t *testing.T, dir string, env []string, args ...string) *demo {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	d := &demo{t: t, Dir: dir, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(bin, append([]string{"demo", "--addr", "127.0.0.1:0"}, args...)...)
	d.cmd.Dir = dir
	d.cmd.Env = cleanEnv(env...)
	d.cmd.Stderr = d.stderr
	pipe, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		// The header ends with "press Ctrl-C"; hand over the URL then, so
		// that d.stdout is complete and no longer written.
		sc := bufio.NewScanner(pipe)
		u := ""
		for sc.Scan() {
			line := sc.Text()
			d.stdout.WriteString(line + "\n")
			if m := listenRE.FindStringSubmatch(line); m != nil {
				u = m[1]
			}
			if strings.HasPrefix(line, "press Ctrl-C") && u != "" {
				found <- u
				io.Copy(io.Discard, pipe)
				return
			}
		}
		close(found)
	}()
	go func() { d.done <- d.cmd.Wait() }()
	select {
	case u, ok := <-found:
		if !ok {
			<-d.done
			t.Fatalf("demo exited before listening:\n%s\n%s", d.stdout.String(), d.stderr.String())
		}
		d.URL = u
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("demo did not start:\n%s", d.stderr.String())
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("demo did not exit cleanly: %v\n%s", err, d.stderr.String())
		}
	})
	return d
}

// stop sends SIGINT and waits for a clean exit.
func (d *demo) stop() error {
	d.once.Do(func() {
		d.cmd.Process.Signal(syscall.SIGINT)
		select {
		case d.exit = <-d.done:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			d.exit = fmt.Errorf("still running 20s after SIGINT")
			<-d.done
		}
	})
	return d.exit
}

// client does not follow redirects and keeps cookies.
func client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type reply struct {
	code int
	hdr  http.Header
	body string
}

func do(t *testing.T, c *http.Client, method, u string, body io.Reader, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "auth" {
			user, pw, _ := strings.Cut(hdr[i+1], ":")
			req.SetBasicAuth(user, pw)
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func form(kv ...string) io.Reader {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return strings.NewReader(v.Encode())
}

const formCT = "application/x-www-form-urlencoded"

func (d *demo) login(t *testing.T, c *http.Client, user, pw string, hdr ...string) reply {
	return do(t, c, "POST", d.URL+"/login", form("username", user, "password", pw), append([]string{"Content-Type", formCT}, hdr...)...)
}

func (d *demo) loginJSON(t *testing.T, c *http.Client, user, pw string) reply {
	b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
	return do(t, c, "POST", d.URL+"/login", strings.NewReader(string(b)), "Content-Type", "application/json", "Accept", "application/json")
}

// memoryDemo runs the demo on the memory store with known accounts.
func memoryDemo(t *testing.T, env ...string) *demo {
	return startDemo(t, "", env, "--store", "memory://", "--user", "alice:wonderland", "--user", "Bob:builder", "--admin", "root:hunter2")
}

func TestDemoLoginRows(t *testing.T) {
	// Every failure and refusal below counts against 127.0.0.1: a high IP
	// limit keeps it unblocked.
	d := memoryDemo(t, "DEFENDER_LOGIN_FAILURE_LIMIT_IP=50")
	c := client()

	// GET /login: the form.
	r := do(t, c, "GET", d.URL+"/login", nil)
	if r.code != 200 || !strings.Contains(r.body, `<form method="post" action="/login">`) || !strings.Contains(r.body, `name="username"`) {
		t.Fatalf("GET /login: %d %s", r.code, r.body)
	}
	// POST, wrong password: 200 with the form and an error.
	r = d.login(t, c, "alice", "nope")
	if r.code != 200 || !strings.Contains(r.body, "Wrong username or password.") || !strings.Contains(r.body, `value="alice"`) {
		t.Fatalf("wrong password: %d %s", r.code, r.body)
	}
	// POST, right password: 303 to / with a session.
	r = d.login(t, c, "alice", "wonderland")
	if r.code != 303 || r.hdr.Get("Location") != "/" || !strings.Contains(r.hdr.Get("Set-Cookie"), "demo_session=") {
		t.Fatalf("success: %d %v", r.code, r.hdr)
	}
	r = do(t, c, "GET", d.URL+"/", nil)
	if !strings.Contains(r.body, "Logged in as <strong>alice</strong>") {
		t.Fatalf("home after login: %s", r.body)
	}
	// A username in another case is the same account.
	r = d.login(t, client(), "BOB", "builder")
	if r.code != 303 {
		t.Fatalf("BOB: %d", r.code)
	}
	// JSON: success 303, wrong password 401.
	r = d.loginJSON(t, client(), "alice", "wonderland")
	if r.code != 303 || r.hdr.Get("Location") != "/" || !strings.Contains(r.body, `"ok":true`) {
		t.Fatalf("JSON success: %d %s", r.code, r.body)
	}
	r = d.loginJSON(t, client(), "alice", "bad")
	if r.code != 401 || !strings.Contains(r.body, `"ok":false`) {
		t.Fatalf("JSON wrong password: %d %s", r.code, r.body)
	}
	// Unknown user: same answer as a wrong password.
	r = d.login(t, client(), "mallory", "x")
	if r.code != 200 || !strings.Contains(r.body, "Wrong username or password.") {
		t.Fatalf("unknown user: %d", r.code)
	}
	// Log out.
	r = do(t, c, "POST", d.URL+"/logout", nil)
	if r.code != 303 {
		t.Fatalf("logout: %d", r.code)
	}
	if r = do(t, c, "GET", d.URL+"/", nil); !strings.Contains(r.body, "You are not logged in") {
		t.Fatalf("home after logout: %s", r.body)
	}
	if r = do(t, c, "GET", d.URL+"/logout", nil); r.code != 405 {
		t.Fatalf("GET /logout: %d", r.code)
	}
	if r = do(t, c, "GET", d.URL+"/nothing", nil); r.code != 404 {
		t.Fatalf("GET /nothing: %d", r.code)
	}
	if r = do(t, c, "PUT", d.URL+"/login", nil); r.code != 405 {
		t.Fatalf("PUT /login: %d", r.code)
	}
	r = do(t, c, "POST", d.URL+"/login", strings.NewReader("{"), "Content-Type", "application/json")
	if r.code != 400 {
		t.Fatalf("bad JSON: %d", r.code)
	}
}

func TestDemoLockout(t *testing.T) {
	d := memoryDemo(t, "DEFENDER_LOGIN_FAILURE_LIMIT=3", "DEFENDER_COOLOFF_TIME=120")
	c := client()
	for i := 1; i <= 3; i++ {
		if r := d.login(t, c, "alice", "wrong"); r.code != 200 {
			t.Fatalf("failure %d: %d", i, r.code)
		}
	}
	// Failure limit+1 gets the lockout response: 429 with Retry-After.
	r := d.login(t, c, "alice", "wrong")
	if r.code != 429 || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("failure 4: %d Retry-After=%q", r.code, r.hdr.Get("Retry-After"))
	}
	if ra := r.hdr.Get("Retry-After"); ra != "120" && ra != "119" {
		t.Errorf("Retry-After = %s, want about 120", ra)
	}
	// Every later request is locked, the right password and GET /login too.
	if r = d.login(t, c, "alice", "wonderland"); r.code != 429 {
		t.Fatalf("right password while locked: %d", r.code)
	}
	if r = do(t, c, "GET", d.URL+"/login", nil); r.code != 429 {
		t.Fatalf("GET /login while locked: %d", r.code)
	}
	if r = d.loginJSON(t, c, "alice", "wonderland"); r.code != 429 || !strings.HasPrefix(r.hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("JSON while locked: %d %q %s", r.code, r.hdr.Get("Content-Type"), r.body)
	}
}

func TestDemoLockoutURL(t *testing.T) {
	d := memoryDemo(t, "DEFENDER_LOGIN_FAILURE_LIMIT=1", "DEFENDER_LOCKOUT_URL=/locked-out")
	c := client()
	d.login(t, c, "alice", "wrong")
	r := d.login(t, c, "alice", "wrong")
	if r.code < 300 || r.code > 399 || r.hdr.Get("Location") != "/locked-out" {
		t.Fatalf("lockout with DEFENDER_LOCKOUT_URL: %d %q", r.code, r.hdr.Get("Location"))
	}
	if r = do(t, c, "GET", d.URL+"/login", nil); r.hdr.Get("Location") != "/locked-out" {
		t.Fatalf("GET /login while locked: %d %q", r.code, r.hdr.Get("Location"))
	}
}

func TestDemoLockoutTemplate(t *testing.T) {
	tmpl := filepath.Join(t.TempDir(), "lockout.html")
	os.WriteFile(tmpl, []byte(`<p>locked: limit={{.failure_limit}} cooloff={{.cooloff_time_seconds}}s/{{.cooloff_time_minutes}}min left={{.seconds_remaining}}</p>`), 0o644)
	d := memoryDemo(t, "DEFENDER_LOGIN_FAILURE_LIMIT=2", "DEFENDER_COOLOFF_TIME=600", "DEFENDER_LOCKOUT_TEMPLATE="+tmpl)
	c := client()
	d.login(t, c, "alice", "wrong")
	d.login(t, c, "alice", "wrong")
	r := d.login(t, c, "alice", "wrong")
	if r.code != 429 || !regexp.MustCompile(`locked: limit=2 cooloff=600s/10min left=(600|599)`).MatchString(r.body) {
		t.Fatalf("template: %d %s", r.code, r.body)
	}
}

func TestDemoStoreDownFailClosed(t *testing.T) {
	port := testserver.FreePort(t) // nothing listens there
	d := startDemo(t, "", []string{"DEFENDER_FAIL_MODE=closed", "DEFENDER_STORE_TIMEOUT=200ms"},
		"--store", fmt.Sprintf("redis://127.0.0.1:%d/0", port), "--user", "alice:wonderland", "--admin", "root:pw", "--audit", "none")
	c := client()
	r := d.login(t, c, "alice", "wonderland")
	if r.code != 503 {
		t.Fatalf("store down, fail mode closed: %d %s", r.code, r.body)
	}
	if strings.Contains(r.body, "goroutine") || strings.Contains(r.body, "panic") {
		t.Fatalf("503 body leaks internals: %s", r.body)
	}
	if r = do(t, c, "GET", d.URL+"/admin/defender/api/blocks", nil, "auth", "root:pw"); r.code != 503 {
		t.Fatalf("admin with the store down: %d %s", r.code, r.body)
	}
}

func TestDemoAdminRows(t *testing.T) {
	// The site's user comes through a proxy (X-Forwarded-For), so that the
	// admin, signing in from the proxy's own address, is not the IP
	// blocked: the admin's sign-in is a login like any other.
	d := memoryDemo(t, "DEFENDER_LOGIN_FAILURE_LIMIT=2", "DEFENDER_BEHIND_REVERSE_PROXY=true")
	xff := []string{"X-Forwarded-For", "198.51.100.7"}
	c := client()
	for i := 0; i < 3; i++ {
		d.login(t, c, "<script>window.pwned=1</script>", "x", xff...)
	}
	admin := d.URL + "/admin/defender/"
	// Without credentials: 401.
	for _, p := range []string{"", "api/blocks", "api/attempts"} {
		if r := do(t, c, "GET", admin+p, nil); r.code != 401 || r.hdr.Get("WWW-Authenticate") == "" {
			t.Fatalf("GET %s without credentials: %d", p, r.code)
		}
	}
	if r := do(t, c, "GET", admin, nil, "auth", "root:wrong"); r.code != 401 {
		t.Fatalf("wrong admin password: %d", r.code)
	}
	// The HTML page.
	r := do(t, c, "GET", admin, nil, "auth", "root:hunter2")
	if r.code != 200 || !strings.Contains(r.body, "&lt;script&gt;window.pwned=1&lt;/script&gt;") || !strings.Contains(r.body, "<code>198.51.100.7</code>") {
		t.Fatalf("admin page: %d %s", r.code, r.body)
	}
	if r.hdr.Get("Content-Security-Policy") == "" || r.hdr.Get("X-Frame-Options") != "DENY" || r.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("admin headers: %v", r.hdr)
	}
	// api/blocks: plain JSON strings with seconds remaining.
	r = do(t, c, "GET", admin+"api/blocks", nil, "auth", "root:hunter2")
	var blocks struct {
		Blocks []struct {
			Kind, IP, Username string
			SecondsRemaining   int64 `json:"seconds_remaining"`
		}
		Next string
	}
	if err := json.Unmarshal([]byte(r.body), &blocks); err != nil || r.code != 200 {
		t.Fatalf("api/blocks: %d %s", r.code, r.body)
	}
	kinds := map[string]string{}
	for _, b := range blocks.Blocks {
		kinds[b.Kind] = b.IP + b.Username
		if b.SecondsRemaining <= 0 {
			t.Errorf("no seconds remaining: %+v", b)
		}
	}
	if kinds["ip"] != "198.51.100.7" || kinds["username"] != "<script>window.pwned=1</script>" {
		t.Fatalf("api/blocks = %s", r.body)
	}
	// api/attempts: the audit file (default: in the working directory).
	deadline := time.Now().Add(15 * time.Second)
	for {
		r = do(t, c, "GET", admin+"api/attempts?ip=198.51.100.7", nil, "auth", "root:hunter2")
		if r.code == 200 && strings.Count(r.body, `"id":`) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("api/attempts: %d %s", r.code, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(d.Dir, defaultAuditFile)); err != nil {
		t.Fatalf("default audit file: %v", err)
	}
	// api/unblock: GET 405; cross-site POST refused, nothing unblocked.
	if r = do(t, c, "GET", admin+"api/unblock?ip=198.51.100.7", nil, "auth", "root:hunter2"); r.code != 405 || r.hdr.Get("Allow") != "POST" {
		t.Fatalf("GET api/unblock: %d", r.code)
	}
	r = do(t, c, "POST", admin+"api/unblock", form("ip", "198.51.100.7"), "auth", "root:hunter2", "Content-Type", formCT,
		"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if r.code != 403 {
		t.Fatalf("cross-site unblock: %d %s", r.code, r.body)
	}
	if r = d.login(t, c, "alice", "wonderland", xff...); r.code != 429 {
		t.Fatalf("still locked after the refused unblock: %d", r.code)
	}
	// Same-origin unblock of the IP: alice can log in again.
	r = do(t, c, "POST", admin+"api/unblock", strings.NewReader(`{"ip":"198.51.100.7"}`), "auth", "root:hunter2",
		"Content-Type", "application/json", "Sec-Fetch-Site", "same-origin", "Origin", d.URL)
	if r.code != 200 || !strings.Contains(r.body, `"unblocked":true`) {
		t.Fatalf("unblock: %d %s", r.code, r.body)
	}
	if r = d.login(t, c, "alice", "wonderland", xff...); r.code != 303 {
		t.Fatalf("login after unblock: %d", r.code)
	}
}

func TestDemoNoDefender(t *testing.T) {
	d := startDemo(t, "", []string{"DEFENDER_LOGIN_FAILURE_LIMIT=1"}, "--no-defender", "--user", "alice:wonderland")
	if !strings.Contains(d.stdout.String(), "defender is OFF") {
		t.Errorf("stdout: %s", d.stdout.String())
	}
	c := client()
	for i := 0; i < 6; i++ {
		if r := d.login(t, c, "alice", "wrong"); r.code != 200 {
			t.Fatalf("unprotected failure %d: %d", i, r.code)
		}
	}
	if r := d.login(t, c, "alice", "wonderland"); r.code != 303 {
		t.Fatalf("unprotected success: %d", r.code)
	}
	if r := do(t, c, "GET", d.URL+"/admin/defender/", nil); r.code != 404 {
		t.Fatalf("admin with --no-defender: %d", r.code)
	}
	if _, err := os.Stat(filepath.Join(d.Dir, defaultStoreFile)); err == nil {
		t.Error("--no-defender created a store file")
	}
}

func TestDemoPrintsCredentials(t *testing.T) {
	d := startDemo(t, "", nil, "--store", "memory://")
	out := d.stdout.String()
	m := regexp.MustCompile(`users:  alice / (\S+), bob / (\S+)`).FindStringSubmatch(out)
	a := regexp.MustCompile(`admin:  (http://\S+/admin/defender/) \(user admin, password (\S+)\)`).FindStringSubmatch(out)
	if m == nil || a == nil {
		t.Fatalf("credentials not printed:\n%s", out)
	}
	c := client()
	if r := d.login(t, c, "alice", m[1]); r.code != 303 {
		t.Fatalf("printed alice password: %d", r.code)
	}
	if r := d.login(t, c, "bob", m[2]); r.code != 303 {
		t.Fatalf("printed bob password: %d", r.code)
	}
	if r := do(t, c, "GET", a[1], nil, "auth", "admin:"+a[2]); r.code != 200 {
		t.Fatalf("printed admin password: %d", r.code)
	}
	if r := do(t, c, "GET", d.URL+"/healthz", nil); r.code != 200 {
		t.Fatalf("healthz: %d", r.code)
	}
}

func TestBadSettings(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"fail mode", []string{"DEFENDER_FAIL_MODE=sideways"}, []string{"demo"}, "DEFENDER_FAIL_MODE"},
		{"negative limit", []string{"DEFENDER_LOGIN_FAILURE_LIMIT=-1"}, []string{"demo"}, "DEFENDER_LOGIN_FAILURE_LIMIT"},
		{"bad cooloff", []string{"DEFENDER_COOLOFF_TIME=soon"}, []string{"demo"}, "DEFENDER_COOLOFF_TIME"},
		{"bad CIDR", []string{"DEFENDER_TRUSTED_PROXIES=10.0.0.0/99"}, []string{"demo"}, "DEFENDER_TRUSTED_PROXIES"},
		{"pair mode with a disable flag", []string{"DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME=true", "DEFENDER_DISABLE_IP_LOCKOUT=true"}, []string{"demo"}, "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME"},
		{"unknown store scheme", nil, []string{"demo", "--store", "bogus://x"}, "--store"},
		{"unknown store scheme from env", []string{"DEFENDER_STORE_URL=bogus://x"}, []string{"demo"}, "DEFENDER_STORE_URL"},
		{"unknown store parameter", nil, []string{"demo", "--store", "memory://?color=red"}, "color"},
		{"unknown audit scheme", nil, []string{"demo", "--store", "memory://", "--audit", "ftp://x"}, "--audit"},
		{"missing lockout template", []string{"DEFENDER_LOCKOUT_TEMPLATE=/nonexistent/lockout.html"}, []string{"demo", "--store", "memory://"}, "DEFENDER_LOCKOUT_TEMPLATE"},
		{"user without password", nil, []string{"demo", "--user", "alice"}, "--user"},
		{"admin twice", nil, []string{"demo", "--admin", "a:b", "--admin", "c:d"}, "--admin"},
		{"unknown flag", nil, []string{"demo", "--colour"}, "colour"},
		{"stray argument", nil, []string{"demo", "now"}, "now"},
		{"bad address", nil, []string{"demo", "--store", "memory://", "--addr", "300.1.1.1:99999"}, "--addr"},
		{"blocks: bad setting", []string{"DEFENDER_FAIL_MODE=sideways"}, []string{"blocks"}, "DEFENDER_FAIL_MODE"},
		{"blocks: stray argument", nil, []string{"blocks", "x"}, "x"},
		{"unblock: nothing", nil, []string{"unblock", "--store", "memory://"}, "ip ADDR"},
		{"unblock: unknown kind", nil, []string{"unblock", "--store", "memory://", "mac", "x"}, "mac"},
		{"unblock: too many", nil, []string{"unblock", "--store", "memory://", "username", "a", "b"}, "quote names"},
		{"cleanup: bad expiration", []string{"DEFENDER_ACCESS_ATTEMPT_EXPIRATION=-5"}, []string{"cleanup"}, "DEFENDER_ACCESS_ATTEMPT_EXPIRATION"},
		{"cleanup: none", nil, []string{"cleanup", "--audit", "none"}, "--audit"},
		{"cleanup: stray", nil, []string{"cleanup", "x"}, "x"},
		{"unknown command", nil, []string{"frobnicate"}, "unknown command"},
		{"no command", nil, nil, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, t.TempDir(), tt.env, tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %q", r.code, r.stderr, tt.want)
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	r := runCLI(t, t.TempDir(), nil, "version")
	if r.code != 0 || !regexp.MustCompile(`^defender \S+ \(go1\.\d+`).MatchString(r.stdout) {
		t.Fatalf("version: %d %q", r.code, r.stdout)
	}
	for _, args := range [][]string{{"help"}, {"demo", "-h"}, {"blocks", "-h"}, {"unblock", "-h"}, {"cleanup", "-h"}} {
		r := runCLI(t, t.TempDir(), nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "usage") {
			t.Fatalf("%v: %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestBlocksAndUnblockAgainstRunningDemo drives the blocks and unblock
// commands against the Redis store a running demo uses.
func TestBlocksAndUnblockAgainstRunningDemo(t *testing.T) {
	addr := testserver.StartRedis(t)
	store := "redis://" + addr + "/0"
	env := []string{"DEFENDER_LOGIN_FAILURE_LIMIT=2", "DEFENDER_STORE_URL=" + store}
	d := startDemo(t, "", env, "--user", "alice:wonderland", "--admin", "root:pw", "--audit", "none")
	c := client()
	for i := 0; i < 3; i++ {
		d.login(t, c, "Alice Smith", "x")
	}
	if r := d.login(t, c, "alice", "wonderland"); r.code != 429 {
		t.Fatalf("not locked: %d", r.code)
	}
	r := runCLI(t, t.TempDir(), env, "blocks")
	if r.code != 0 || !regexp.MustCompile(`(?m)^ip\s+127\.0\.0\.1\s+-\s+3\s+\d+s$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^username\s+-\s+"alice smith"\s+3\s+\d+s$`).MatchString(r.stdout) {
		t.Fatalf("blocks: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, t.TempDir(), nil, "blocks", "--store", store, "--json")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, `"username":"alice smith"`) {
		t.Fatalf("blocks --json: %d %s", r.code, r.stdout)
	}
	r = runCLI(t, t.TempDir(), nil, "unblock", "--store", store, "username", "ALICE SMITH")
	if r.code != 0 || !strings.Contains(r.stdout, `unblocked username "ALICE SMITH"`) {
		t.Fatalf("unblock username: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := d.login(t, c, "alice", "wonderland"); r.code != 429 {
		t.Fatalf("the IP is still blocked: %d", r.code)
	}
	r = runCLI(t, t.TempDir(), nil, "unblock", "--store", store, "ip", "127.0.0.1")
	if r.code != 0 || !strings.Contains(r.stdout, "unblocked ip 127.0.0.1") {
		t.Fatalf("unblock ip: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := d.login(t, c, "alice", "wonderland"); r.code != 303 {
		t.Fatalf("login after unblock: %d", r.code)
	}
	r = runCLI(t, t.TempDir(), env, "unblock", "ip", "127.0.0.1")
	if r.code != 0 || !strings.Contains(r.stdout, "was not blocked") {
		t.Fatalf("unblock again: %d %s", r.code, r.stdout)
	}
	r = runCLI(t, t.TempDir(), env, "unblock", "pair", "127.0.0.1", "bob")
	if r.code != 0 || !strings.Contains(r.stdout, "pair 127.0.0.1 bob was not blocked") {
		t.Fatalf("unblock pair: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, t.TempDir(), env, "blocks")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "no blocks" {
		t.Fatalf("blocks after unblock: %d %q", r.code, r.stdout)
	}
	r = runCLI(t, t.TempDir(), nil, "unblock", "--store", store, "ip", "not-an-ip")
	if r.code == 0 {
		t.Fatalf("unblock of a bad IP succeeded: %s", r.stdout)
	}
	// The store down: exit 1 (a failure, not a bad setting).
	port := testserver.FreePort(t)
	r = runCLI(t, t.TempDir(), []string{"DEFENDER_STORE_TIMEOUT=200ms"}, "blocks", "--store", fmt.Sprintf("redis://127.0.0.1:%d/0", port))
	if r.code != 1 || r.stderr == "" {
		t.Fatalf("blocks with the store down: %d %q", r.code, r.stderr)
	}
}

// TestDefaultBoltStorePersists runs the demo on its default store (the
// bolt file in the working directory), stops it, and lists its blocks.
func TestDefaultBoltStorePersists(t *testing.T) {
	dir := t.TempDir()
	d := startDemo(t, dir, []string{"DEFENDER_LOGIN_FAILURE_LIMIT=1"}, "--user", "alice:wonderland")
	if !strings.Contains(d.stdout.String(), "store:  bolt://"+filepath.Join(dir, defaultStoreFile)) {
		t.Fatalf("default store not printed:\n%s", d.stdout.String())
	}
	c := client()
	d.login(t, c, "alice", "x")
	if r := d.login(t, c, "alice", "x"); r.code != 429 {
		t.Fatalf("not locked: %d", r.code)
	}
	// While the demo holds the bolt file, blocks says so (exit 1, no hang).
	r := runCLI(t, dir, nil, "blocks")
	if r.code != 1 || !strings.Contains(r.stderr, "stop it first") {
		t.Fatalf("blocks on a held bolt file: %d %q", r.code, r.stderr)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.stderr.String())
	}
	r = runCLI(t, dir, nil, "blocks")
	if r.code != 0 || !strings.Contains(r.stdout, "127.0.0.1") || !strings.Contains(r.stdout, "alice") {
		t.Fatalf("blocks after restart: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// The audit records were flushed on shutdown.
	b, err := os.ReadFile(filepath.Join(dir, defaultAuditFile))
	if err != nil || strings.Count(string(b), "\n") != 2 {
		t.Fatalf("audit file after shutdown: %v %q", err, b)
	}
	// cleanup keeps recent records.
	r = runCLI(t, dir, nil, "cleanup")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 0 access attempt(s)") {
		t.Fatalf("cleanup: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

func TestCleanup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jsonl")
	old := time.Now().Add(-48 * time.Hour).UTC()
	recent := time.Now().Add(-time.Hour).UTC()
	var lines []string
	for i, ts := range []time.Time{old, old, recent} {
		b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("%032x", i+1), "time": ts, "ip": "192.0.2.1", "username": "u", "login_valid": false})
		lines = append(lines, string(b))
	}
	os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	r := runCLI(t, dir, []string{"DEFENDER_AUDIT_URL=file://" + path}, "cleanup")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 2 access attempt(s) older than 24h0m0s") {
		t.Fatalf("cleanup: %d %s %s", r.code, r.stdout, r.stderr)
	}
	empty := t.TempDir()
	r = runCLI(t, empty, nil, "cleanup")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to clean") {
		t.Fatalf("cleanup without an audit log: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(empty, defaultAuditFile)); err == nil {
		t.Fatal("cleanup created the default audit file")
	}
	r = runCLI(t, dir, []string{"DEFENDER_ACCESS_ATTEMPT_EXPIRATION=0.5"}, "cleanup", "--audit", "file://"+path)
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 1 access attempt(s)") {
		t.Fatalf("cleanup --audit: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

func TestDemoUsernameFormField(t *testing.T) {
	d := startDemo(t, "", []string{"DEFENDER_USERNAME_FORM_FIELD=email", "DEFENDER_LOGIN_FAILURE_LIMIT=1"},
		"--store", "memory://", "--user", "alice@example.com:wonderland", "--audit", "none")
	c := client()
	if r := do(t, c, "GET", d.URL+"/login", nil); !strings.Contains(r.body, `name="email"`) {
		t.Fatalf("the form does not use the field: %s", r.body)
	}
	if r := do(t, c, "POST", d.URL+"/login", form("email", "alice@example.com", "password", "wonderland"), "Content-Type", formCT); r.code != 303 {
		t.Fatalf("form login with email: %d", r.code)
	}
	r := do(t, c, "POST", d.URL+"/login", strings.NewReader(`{"email":"ALICE@example.com","password":"wonderland"}`), "Content-Type", "application/json")
	if r.code != 303 {
		t.Fatalf("JSON login with email: %d %s", r.code, r.body)
	}
	// The username counted is the email field: two failures lock it, from
	// any address.
	do(t, c, "POST", d.URL+"/login", form("email", "bob@example.com", "password", "x"), "Content-Type", formCT)
	r = do(t, c, "POST", d.URL+"/login", form("email", "bob@example.com", "password", "x"), "Content-Type", formCT)
	if r.code != 429 {
		t.Fatalf("second failure: %d", r.code)
	}
	if !strings.Contains(d.stdout.String(), "audit:  none") {
		t.Errorf("--audit none not printed: %s", d.stdout.String())
	}
	if _, err := os.Stat(filepath.Join(d.Dir, defaultAuditFile)); err == nil {
		t.Error("--audit none wrote an audit file")
	}
}

func TestDemoStopsOnSIGTERM(t *testing.T) {
	d := startDemo(t, "", nil, "--store", "memory://", "--user", "alice:wonderland", "--audit", "none")
	if r := do(t, client(), "GET", d.URL+"/favicon.ico", nil); r.code != 204 {
		t.Fatalf("favicon: %d", r.code)
	}
	d.once.Do(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case d.exit = <-d.done:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			d.exit = fmt.Errorf("still running 20s after SIGTERM")
			<-d.done
		}
	})
	if d.exit != nil {
		t.Fatalf("SIGTERM: %v\n%s", d.exit, d.stderr.String())
	}
	if !strings.Contains(d.stderr.String(), "shutting down") {
		t.Errorf("no shutdown log: %s", d.stderr.String())
	}
}

func TestDemoPermanentLockout(t *testing.T) {
	d := memoryDemo(t, "DEFENDER_LOGIN_FAILURE_LIMIT=1", "DEFENDER_LOCKOUT_COOLOFF_TIME=0", "DEFENDER_LOCKOUT_STATUS=403", "DEFENDER_BEHIND_REVERSE_PROXY=true")
	c := client()
	xff := []string{"X-Forwarded-For", "198.51.100.7"} // not the admin's address
	d.login(t, c, "alice", "wrong", xff...)
	r := d.login(t, c, "alice", "wrong", xff...)
	if r.code != 403 || r.hdr.Get("Retry-After") != "" {
		t.Fatalf("permanent block: %d Retry-After=%q", r.code, r.hdr.Get("Retry-After"))
	}
	r = do(t, c, "GET", d.URL+"/admin/defender/api/blocks", nil, "auth", "root:hunter2")
	if !strings.Contains(r.body, `"permanent":true`) || !strings.Contains(r.body, `"seconds_remaining":0`) {
		t.Fatalf("api/blocks: %s", r.body)
	}
}
