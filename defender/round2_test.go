package defender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/backend"
	"github.com/go-defender/defender/backend/memory"
)

// TestNewSettingsValidate: the settings of the second round are checked
// and read from the environment, each error naming its variable.
func TestNewSettingsValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		envBlockCacheTTL:      func(c *Config) { c.BlockCacheTTL = -1 },
		envVerifyConcurrency:  func(c *Config) { c.VerifyConcurrency = -1 },
		envVerifyQueue:        func(c *Config) { c.VerifyQueue = -1 },
		envVerifyQueueTimeout: func(c *Config) { c.VerifyQueueTimeout = -1 },
		envAuditCoalesce:      func(c *Config) { c.AuditCoalesceWindow = -1 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s negative: %v", name, err)
		}
	}
	c, err := ConfigFromLookup(lookup(map[string]string{
		envBlockCacheTTL: "0", envVerifyConcurrency: "4", envVerifyQueue: "8", envVerifyQueueTimeout: "250ms",
		envAuditCoalesce: "2s",
	}))
	if err != nil || c.BlockCacheTTL != 0 || c.VerifyConcurrency != 4 || c.VerifyQueue != 8 ||
		c.VerifyQueueTimeout != 250*time.Millisecond || c.AuditCoalesceWindow != 2*time.Second {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestVerdictStrings(t *testing.T) {
	for v, want := range map[Verdict]string{Allow: "allow", Locked: "locked", Unavailable: "unavailable",
		Refused: "refused", Abandoned: "abandoned", Shed: "shed", Verdict(99): "verdict(?)"} {
		if v.String() != want {
			t.Errorf("%d: %q", v, v.String())
		}
	}
	var n noCopy // only for go vet's copylocks check
	n.Lock()
	n.Unlock()
}

// TestLoginFromOutsideTheMiddleware: a request the middleware did not
// read has no LoginInfo; a BasicAuth request has the canonical username.
func TestLoginFromOutsideTheMiddleware(t *testing.T) {
	if _, ok := LoginFrom(httptest.NewRequest("GET", "/", nil)); ok {
		t.Fatal("a plain request has a login")
	}
	st, _ := memory.New(nil)
	defer st.Close()
	d, _ := New(st, DefaultConfig(), &Options{Logger: slog.New(slog.DiscardHandler)})
	defer d.Close()
	m, _ := NewMiddleware(d, nil)
	var got LoginInfo
	h := m.BasicAuth("", func(ctx context.Context, u, p string) bool { return p == "pw" })(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { got, _ = LoginFrom(r) }))
	r := httptest.NewRequest("GET", "/", nil)
	r.SetBasicAuth(" ALICE ", "pw")
	r.RemoteAddr = "192.0.2.1:1"
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got.Username != "ALICE" || got.Canonical != "alice" {
		t.Fatalf("%+v", got)
	}
	r.Header.Add("Authorization", "Basic eDp5")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Fatalf("two Authorization headers: %d", w.Code)
	}
}

// TestCustomUsernameBodies: with GetUsername, JSON and multipart bodies
// are prepared for it, a body past the bound is refused, and a body cut
// short abandons the attempt.
func TestCustomUsernameBodies(t *testing.T) {
	st, _ := memory.New(nil)
	defer st.Close()
	d, _ := New(st, DefaultConfig(), &Options{Logger: slog.New(slog.DiscardHandler)})
	defer d.Close()
	var seen string
	m, _ := NewMiddleware(d, &MiddlewareOptions{MaxBodyBytes: 512, GetUsername: func(r *http.Request) string {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart") {
			return r.FormValue("login")
		}
		b, _ := io.ReadAll(r.Body)
		return string(b)
	}})
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, _ := LoginFrom(r)
		seen = info.Canonical
		w.WriteHeader(401)
	}))
	send := func(ctype string, body io.Reader) int {
		r := httptest.NewRequest("POST", "/login", body)
		r.Header.Set("Content-Type", ctype)
		r.RemoteAddr = "192.0.2.1:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if code := send("application/json", strings.NewReader("Bob")); code != 401 || seen != "bob" {
		t.Fatalf("JSON: %d %q", code, seen)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("login", "Carol")
	mw.Close()
	if code := send(mw.FormDataContentType(), &buf); code != 401 || seen != "carol" {
		t.Fatalf("multipart: %d %q", code, seen)
	}
	if code := send("application/json", strings.NewReader(strings.Repeat("x", 1000))); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("too large: %d", code)
	}
	if code := send("application/json", &cutShort{}); code != 499 {
		t.Fatalf("cut short: %d", code)
	}
	if code := send("application/x-www-form-urlencoded", &cutShort{}); code != 499 {
		t.Fatalf("form cut short: %d", code)
	}
}

// cutShort is a body that ends in an error: its client went away.
type cutShort struct{ n int }

func (c *cutShort) Read(p []byte) (int, error) {
	if c.n == 0 {
		c.n++
		return copy(p, "x"), nil
	}
	return 0, io.ErrUnexpectedEOF
}

// TestAbandonCountsMetrics and refund on the local store: an abandoned
// attempt is counted as abandoned, and a reservation made on the local
// fail-mode store is refunded there.
func TestAbandonCountsMetrics(t *testing.T) {
	d, f, m, _ := newFlaky(t, FailLocal)
	f.down.Store(true)
	cctx, cancel := context.WithCancel(context.Background())
	a := d.Attempt(cctx, login("192.0.2.1", "u")) // reserved on the local store
	if a.Decision().FailMode != FailLocal || !a.Decision().Allowed() {
		t.Fatalf("%+v", a.Decision())
	}
	cancel()
	a.refund(cctx)
	a.abandon(cctx)
	if a.Decision().Verdict != Abandoned || m.attempts.Load() == 0 {
		t.Fatalf("%+v", a.Decision())
	}
	es, _ := d.local.Get(ctx, []string{(&identity{kind: KindUsername, username: "u"}).key(d.prefix, slotCounter)})
	if es[0].Found && string(es[0].Value) != "0" {
		t.Fatalf("the local reservation was not refunded: %s", es[0].Value)
	}
}

// TestRefundWhileBreakerOpen: a reservation refunded while the breaker is
// open (the client went away during an outage) is queued and made once the
// store is back.
func TestRefundWhileBreakerOpen(t *testing.T) {
	d, b := newBlackHole(t)
	a := d.Attempt(ctx, login("192.0.2.1", "alice"))
	if !a.Decision().Allowed() {
		t.Fatal(a.Decision())
	}
	d.guard.open.Store(true)
	a.refund(ctx)
	d.guard.open.Store(false)
	alice := identity{kind: KindUsername, username: "alice"}
	waitFor(t, "the refund made again", func() bool { return counter(t, d, alice) == 0 })
	_ = b
}

// TestRetryQueueBounds: a full retry queue and a full reset queue do not
// block a login: the first is logged, the second makes the reset at once;
// an entry whose counters have expired is dropped; Close warns about what
// is left.
func TestRetryQueueBounds(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	st, _ := memory.New(nil)
	defer st.Close()
	n := &network{Backend: st}
	clk := newClock()
	d, err := New(n, DefaultConfig(), &Options{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Fill both queues while nothing empties them.
	close(d.guard.stop)
	d.guard.wg.Wait()
	for i := 0; i < retryQueue+1; i++ {
		d.retryLater([]string{"k"}, nil)
	}
	if d.resetLater([]string{"defender:f:{u:x}"}) {
		for i := 0; i < retryQueue; i++ {
			d.resetLater([]string{"defender:f:{u:x}"})
		}
	}
	if d.resetLater([]string{"defender:f:{u:y}"}) {
		t.Fatal("a full reset queue took a job")
	}
	d.guard.stop = make(chan struct{})
	mu.Lock()
	full := strings.Contains(logs.String(), "retry queue is full")
	mu.Unlock()
	if !full {
		t.Fatalf("a full retry queue was not logged: %s", logs.String())
	}
	// An expired entry is dropped by the retrier.
	g := &d.guard
	for len(g.retries) > 0 {
		<-g.retries
	}
	for len(g.resets) > 0 {
		j := <-g.resets
		close(j.done)
	}
	d.retryLater([]string{"k"}, []string{"r"})
	clk.Advance(time.Hour)
	g.wg.Add(1)
	go d.retrier()
	waitFor(t, "the expired entry dropped", func() bool { return len(g.retries) == 0 })
	d.ttl = 0
	d.retryLater(nil, nil) // ttl 0: kept until made; made at once here
	close(g.stop)
	g.wg.Wait()
	d.guard.stop = nil // Close must not stop the guard twice
	d.Close()
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// failingNotifier is a network store whose announcements fail.
type failingNotifier struct {
	*network
}

func (failingNotifier) Notify(context.Context, ...string) error {
	return fmt.Errorf("notify: %w", backend.ErrUnavailable)
}

func (failingNotifier) Subscribe(func(string), func()) (func(), error) {
	return nil, fmt.Errorf("subscribe: %w", backend.ErrUnavailable)
}

// TestNearCacheWithoutAnnouncements: a store whose subscription fails
// still gets a cache bounded by BlockCacheTTL, and an unblock whose
// announcement fails still unblocks here.
func TestNearCacheWithoutAnnouncements(t *testing.T) {
	st, _ := memory.New(nil)
	defer st.Close()
	f := failingNotifier{&network{Backend: st}}
	d, err := New(f, DefaultConfig(), &Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.cache == nil || d.cache.stopNT != nil {
		t.Fatal("cache without a subscription expected")
	}
	for i := 0; i < 4; i++ {
		d.Attempt(ctx, Login{Username: "alice"}).Failed(ctx)
	}
	if ok, err := d.UnblockUsername(ctx, "alice"); !ok || err != nil {
		t.Fatalf("unblock: %v %v", ok, err)
	}
	if dec := d.Check(ctx, Login{Username: "alice"}); !dec.Allowed() {
		t.Fatalf("after the unblock here: %+v", dec)
	}
}

// TestRepairFails: a counter past its limit whose block cannot be set
// still refuses, with the first lockout's duration.
func TestRepairFails(t *testing.T) {
	d, h, _ := newHangUp(t, FailClosed)
	alice := identity{kind: KindUsername, username: "alice"}
	if _, err := d.store.Incr(ctx, []string{alice.key(d.prefix, slotCounter)}, 9, time.Hour); err != nil {
		t.Fatal(err)
	}
	h.failBlock.Store(true)
	dec := d.Attempt(ctx, Login{Username: "alice"}).Decision()
	if dec.Verdict != Locked || dec.Duration != d.lockouts[0] {
		t.Fatalf("%+v", dec)
	}
}
