package defender

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/backend/memory"
)

// TestAdmission: past VerifyConcurrency running checks and VerifyQueue
// waiting ones, a login is shed at once: 503 with Retry-After and
// X-Defender-Reason shed, never counted, recorded as shed; a waiting one
// is shed at VerifyQueueTimeout; the others are checked in turn.
func TestAdmission(t *testing.T) {
	st, _ := memory.New(nil)
	defer st.Close()
	cfg := DefaultConfig()
	cfg.VerifyConcurrency, cfg.VerifyQueue, cfg.VerifyQueueTimeout = 1, 1, time.Hour
	cfg.AuditCoalesceWindow = 0
	spy := &recorder{}
	d, err := New(st, cfg, &Options{Logger: slog.New(slog.DiscardHandler), Audit: spy})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m, _ := NewMiddleware(d, nil)
	entered := make(chan string, 4)
	gate := make(chan struct{})
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, _ := LoginFrom(r)
		entered <- info.Username
		<-gate
		w.WriteHeader(http.StatusUnauthorized)
	}))
	post := func(user, ip string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"username": {user}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = ip + ":1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	var wg sync.WaitGroup
	res := make(map[string]*httptest.ResponseRecorder)
	var mu sync.Mutex
	run := func(user, ip string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := post(user, ip)
			mu.Lock()
			res[user] = w
			mu.Unlock()
		}()
	}
	run("a", "192.0.2.1")
	if got := <-entered; got != "a" {
		t.Fatal(got)
	}
	run("b", "192.0.2.2")
	waitFor(t, "b queued", func() bool { return d.admission.waiting.Load() == 1 })
	w := post("c", "192.0.2.3") // no slot, no room in the queue
	if w.Code != 503 || w.Header().Get(ReasonHeader) != "shed" || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("shed: %d %v", w.Code, w.Header())
	}
	close(gate)
	wg.Wait()
	if got := <-entered; got != "b" || res["a"].Code != 401 || res["b"].Code != 401 {
		t.Fatalf("the queued check did not run: %q %d %d", got, res["a"].Code, res["b"].Code)
	}
	c := identity{kind: KindUsername, username: "c"}
	cip := identity{kind: KindIP, ip: "192.0.2.3"}
	if counter(t, d, c) != 0 || counter(t, d, cip) != 0 {
		t.Fatalf("a shed login was counted: %d %d", counter(t, d, c), counter(t, d, cip))
	}
	shed := 0
	recs := spy.all()
	for _, r := range recs {
		if r.Refused == "shed" && r.Username == "c" && !r.Locked && !r.Success {
			shed++
		}
	}
	if shed != 1 {
		t.Fatalf("records %+v: want the shed login recorded as shed", recs)
	}
}

// TestAdmissionTimeoutAndCancel: a check waiting past VerifyQueueTimeout
// is shed; one whose client goes away while waiting is abandoned; neither
// stays counted.
func TestAdmissionTimeoutAndCancel(t *testing.T) {
	st, _ := memory.New(nil)
	defer st.Close()
	cfg := DefaultConfig()
	cfg.VerifyConcurrency, cfg.VerifyQueueTimeout = 1, 20*time.Millisecond
	d, err := New(st, cfg, &Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	hold := d.Attempt(ctx, login("192.0.2.1", "x"))
	release, ok := hold.Admit(ctx)
	if !ok {
		t.Fatal("first check not admitted")
	}
	a := d.Attempt(ctx, login("192.0.2.2", "y"))
	if _, ok := a.Admit(ctx); ok || a.Decision().Verdict != Shed {
		t.Fatalf("after the queue timeout: %+v", a.Decision())
	}
	if _, ok := a.Admit(ctx); ok {
		t.Fatal("a shed attempt admitted")
	}
	cctx, cancel := context.WithCancel(context.Background())
	b := d.Attempt(cctx, login("192.0.2.3", "z"))
	go func() {
		waitFor(t, "z waiting", func() bool { return d.admission.waiting.Load() == 1 })
		cancel()
	}()
	if _, ok := b.Admit(cctx); ok || b.Decision().Verdict != Abandoned {
		t.Fatalf("client gone while waiting: %+v", b.Decision())
	}
	for _, id := range []identity{{kind: KindUsername, username: "y"}, {kind: KindUsername, username: "z"}} {
		if n := counter(t, d, id); n != 0 {
			t.Fatalf("%s counted %d", id.username, n)
		}
	}
	release()
	if _, ok := d.Attempt(ctx, login("192.0.2.4", "w")).Admit(ctx); !ok {
		t.Fatal("a free slot refused")
	}
	cfg.VerifyQueueTimeout = 0
	if a := newAdmission(cfg); a.queue != 4 {
		t.Fatalf("default queue %d, want 4 × VerifyConcurrency", a.queue)
	}
}
