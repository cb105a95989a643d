package browsertest

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/go-defender/defender/internal/testserver"
)

// chromiumPath is Debian's chromium; `make test` installs it.
const chromiumPath = "/usr/bin/chromium"

const (
	adminUser = "root"
	adminPass = "hunter2"
	// xss is a username that would run script if the admin page did not
	// escape it (or if the CSP let inline script run).
	xss = `<script>window.pwned=1;alert(1)</script><img src=x onerror="window.pwned=2;alert(2)">`
)

var bin string // the defender binary, built by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "defender-browsertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "defender")
	// Build from the root module so that its go.mod picks the versions.
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/defender")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building defender: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startDemo runs `defender demo` on a free port and returns its URL; it is
// stopped with SIGINT when the test ends.
func startDemo(t *testing.T, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, "demo", "--addr", "127.0.0.1:0", "--store", "memory://",
		"--user", "alice:wonderland", "--admin", adminUser+":"+adminPass)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEFENDER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	var mu sync.Mutex
	cmd.Stderr = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return stderr.Write(p) })
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				mu.Lock()
				t.Errorf("demo exit: %v\n%s", err, stderr.String())
				mu.Unlock()
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("demo still running 20s after SIGINT")
		}
	})
	urlc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`listening on (http://\S+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case u := <-urlc:
		return u
	case err := <-done:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("demo exited: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not start in 60s")
	}
	return ""
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// browser starts headless Chromium and returns a tab context.
func browser(t *testing.T) context.Context {
	t.Helper()
	testserver.LookPath(t, chromiumPath, "chromium")
	// Not t.TempDir: Chromium may still be writing its profile for a
	// moment after it is told to exit.
	profile, err := os.MkdirTemp("", "defender-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1200, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	tctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		for i := 0; i < 50; i++ {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove %s", profile)
	})
	if err := chromedp.Run(tctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return tctx
}

// artifactsDir receives the screenshots of a run (DEFENDER_ARTIFACTS, or
// artifacts/ here, which git ignores); a reviewed set is kept in docs/img.
var artifactsDir = func() string {
	if d := os.Getenv("DEFENDER_ARTIFACTS"); d != "" {
		return d
	}
	return "artifacts"
}()

// saveScreenshot writes a full-page PNG to artifactsDir/name.
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(artifactsDir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s (%d bytes)", filepath.Join(artifactsDir, name), len(png))
}

// tryLogin fills the login form in the browser and submits it, then waits
// for the answer page.
func tryLogin(ctx context.Context, base, user, pw string) error {
	return submitAndWait(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, user, chromedp.ByID),
		chromedp.SendKeys(`#password`, pw, chromedp.ByID),
	)(chromedp.Submit(`#password`, chromedp.ByID))
}

// submitAndWait runs before, marks the document, runs the action that
// navigates, and waits until a new document has loaded.
func submitAndWait(ctx context.Context, before ...chromedp.Action) func(chromedp.Action) error {
	return func(nav chromedp.Action) error {
		steps := append(before, chromedp.Evaluate(`window.__old = 1`, nil), nav)
		if err := chromedp.Run(ctx, steps...); err != nil {
			return err
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			var fresh bool
			err := chromedp.Run(ctx, chromedp.Evaluate(`window.__old === undefined && document.readyState === "complete"`, &fresh))
			if err == nil && fresh {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no new page after 15s (last error %v)", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func bodyText(t *testing.T, ctx context.Context) string {
	t.Helper()
	var s string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.body.innerText`, &s)); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLockoutAdminUnblockLogin is the whole story in a real browser.
func TestLockoutAdminUnblockLogin(t *testing.T) {
	base := startDemo(t,
		"DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME=3",
		"DEFENDER_LOGIN_FAILURE_LIMIT_IP=50",
		"DEFENDER_COOLOFF_TIME=300",
	)
	// A username holding script gets itself blocked (sent without the
	// browser: the browser only has to render it).
	for i := 0; i < 4; i++ {
		resp, err := http.PostForm(base+"/login", url.Values{"username": {xss}, "password": {"x"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	ctx := browser(t)
	var dialogs []string
	var dmu sync.Mutex
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dmu.Lock()
			dialogs = append(dialogs, e.Message)
			dmu.Unlock()
			go chromedp.Run(ctx, page.HandleJavaScriptDialog(false))
		}
	})

	// 1. Wrong passwords until locked out: failures 1..3 get the form with
	// an error, failure 4 the lockout page.
	for i := 1; i <= 3; i++ {
		if err := tryLogin(ctx, base, "alice", "wrong"); err != nil {
			t.Fatalf("failure %d: %v", i, err)
		}
		if txt := bodyText(t, ctx); !strings.Contains(txt, "Wrong username or password.") {
			t.Fatalf("failure %d: page says %q", i, txt)
		}
		if i == 1 {
			saveScreenshot(t, ctx, "login-error.png")
		}
	}
	if err := tryLogin(ctx, base, "alice", "wrong"); err != nil {
		t.Fatal(err)
	}
	txt := bodyText(t, ctx)
	if !strings.Contains(strings.ToLower(txt), "locked") || strings.Contains(txt, "Wrong username") {
		t.Fatalf("failure 4: no lockout page: %q", txt)
	}
	saveScreenshot(t, ctx, "lockout.png")
	// The right password is refused while locked.
	if err := tryLogin(ctx, base, "alice", "wonderland"); err != nil {
		t.Fatal(err)
	}
	if txt := bodyText(t, ctx); !strings.Contains(strings.ToLower(txt), "locked") {
		t.Fatalf("right password while locked: %q", txt)
	}

	// 2. The admin, with HTTP Basic credentials on every request.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(adminUser+":"+adminPass))
	if err := chromedp.Run(ctx,
		network.Enable(),
		network.SetExtraHTTPHeaders(network.Headers{"Authorization": auth}),
		chromedp.Navigate(base+"/admin/defender/"),
		chromedp.WaitVisible(`#usernames table`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("admin page: %v", err)
	}
	// Let the page script run its first tick (relative times).
	var rel string
	if err := chromedp.Run(ctx, chromedp.Poll(`(function(){var e=document.querySelector(".rel-until");return e&&/^in \d/.test(e.textContent)?e.textContent:false})()`, &rel, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("relative time never rendered: %v", err)
	}
	txt = bodyText(t, ctx)
	for _, want := range []string{"Blocked usernames", "alice", "window.pwned=1", "No blocked IPs"} {
		if !strings.Contains(txt, want) {
			t.Errorf("admin page lacks %q:\n%s", want, txt)
		}
	}
	// The script username is text, not markup: nothing ran.
	var pwned string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`typeof window.pwned`, &pwned)); err != nil {
		t.Fatal(err)
	}
	var imgs int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll("main img, main script").length`, &imgs)); err != nil {
		t.Fatal(err)
	}
	if pwned != "undefined" || imgs != 0 {
		t.Fatalf("the <script> username ran or was parsed: typeof window.pwned = %s, injected nodes = %d", pwned, imgs)
	}
	// Sortable tables: a click on a header sorts, a second click reverses.
	order := func() (string, string) {
		var sortAttr, first string
		if err := chromedp.Run(ctx,
			chromedp.Click(`#usernames th:first-child`, chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelector("#usernames th").getAttribute("aria-sort")`, &sortAttr),
			chromedp.Evaluate(`document.querySelector("#usernames tbody tr td").getAttribute("data-value")`, &first),
		); err != nil {
			t.Fatalf("sorting: %v", err)
		}
		return sortAttr, first
	}
	if dir, first := order(); dir != "ascending" || first != xss {
		t.Fatalf("first click: aria-sort=%q, first row %q", dir, first)
	}
	if dir, first := order(); dir != "descending" || first != "alice" {
		t.Fatalf("second click: aria-sort=%q, first row %q", dir, first)
	}
	saveScreenshot(t, ctx, "admin.png")

	// 3. Unblock alice with her row's button.
	if err := submitAndWait(ctx)(chromedp.Click(`//input[@name="username" and @value="alice"]/following-sibling::button`, chromedp.BySearch)); err != nil {
		t.Fatalf("unblock button: %v", err)
	}
	txt = bodyText(t, ctx)
	if !strings.Contains(txt, "Unblocked the username “alice”") {
		t.Fatalf("after unblock: %q", txt)
	}
	if strings.Contains(txt, "\nalice\t") {
		t.Fatalf("alice still listed: %q", txt)
	}
	var left int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('#usernames input[name="username"]').length`, &left)); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Fatalf("%d username blocks left, want 1 (the script one)", left)
	}
	saveScreenshot(t, ctx, "admin-after-unblock.png")

	// 4. Alice logs in.
	if err := tryLogin(ctx, base, "alice", "wonderland"); err != nil {
		t.Fatal(err)
	}
	var who, loc string
	if err := chromedp.Run(ctx, chromedp.Text(`#who`, &who, chromedp.ByID), chromedp.Location(&loc)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(who, "Logged in as alice") || loc != base+"/" {
		t.Fatalf("after login: %q at %s", who, loc)
	}

	// The dialog detector works: a probe alert is seen, and it is the only
	// dialog of the whole run.
	if err := chromedp.Run(ctx, chromedp.Evaluate(`setTimeout(function(){alert("probe")}, 0)`, nil)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		dmu.Lock()
		got := append([]string(nil), dialogs...)
		dmu.Unlock()
		if len(got) > 0 && got[len(got)-1] == "probe" {
			if len(got) != 1 {
				t.Fatalf("dialogs opened: %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probe alert was never seen (dialogs: %q)", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdminCrossSiteFormRefused posts the unblock form from another origin
// in the browser (a page on a second server): the browser sends
// Sec-Fetch-Site: cross-site and the admin refuses.
func TestAdminCrossSiteFormRefused(t *testing.T) {
	// The failing client comes through a proxy: its IP is blocked, not the
	// admin's (the admin's sign-in is a login like any other).
	base := startDemo(t, "DEFENDER_LOGIN_FAILURE_LIMIT=1", "DEFENDER_BEHIND_REVERSE_PROXY=true")
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(url.Values{"username": {"alice"}, "password": {"x"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// The attacker's page, on another origin (localhost, another port).
	evil := http.NewServeMux()
	evil.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/admin/defender/api/unblock">
<input name="username" value="alice"><input name="ip" value="">
</form><form id="g" method="post" action="%s/admin/defender/api/unblock"><input name="ip" value="198.51.100.7"></form>`, base, base)
	})
	srv := &http.Server{Handler: evil}
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ctx := browser(t)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(adminUser+":"+adminPass))
	var txt string
	if err := submitAndWait(ctx,
		network.Enable(),
		network.SetExtraHTTPHeaders(network.Headers{"Authorization": auth}),
		chromedp.Navigate("http://localhost:"+portOf(ln.Addr().String())+"/"),
		chromedp.WaitReady(`#g`, chromedp.ByID),
	)(chromedp.Submit(`#g input`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.body.innerText`, &txt)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(txt, "cross-origin request refused") {
		t.Fatalf("cross-site form answer: %q", txt)
	}
	// Still blocked.
	req, _ := http.NewRequest("GET", base+"/admin/defender/api/blocks", nil)
	req.SetBasicAuth(adminUser, adminPass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"ip":"198.51.100.7"`) {
		t.Fatalf("the cross-site form unblocked: %s", b)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
