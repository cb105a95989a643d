package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   outcome
	}{
		{303, outSuccess}, {302, outSuccess}, {200, outWrong}, {401, outWrong},
		{429, outLocked}, {403, outLocked}, {503, outError}, {500, outError},
	} {
		if got := classify(tc.status); got != tc.want {
			t.Errorf("classify(%d) = %v, want %v", tc.status, got, tc.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(ds, tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

// site answers like the demo: the password "ok" logs in, "lock" is
// locked, "boom" is a server error, anything else a wrong password. It
// records the X-Forwarded-For of each request.
func site(t *testing.T) (*httptest.Server, chan string) {
	xff := make(chan string, 10000)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		xff <- r.Header.Get("X-Forwarded-For") + " " + r.PostFormValue("username")
		switch r.PostFormValue("password") {
		case "ok":
			w.Header().Set("Location", "/")
			w.WriteHeader(http.StatusSeeOther)
		case "lock":
			w.WriteHeader(http.StatusTooManyRequests)
		case "boom":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(s.Close)
	return s, xff
}

func TestSaturateCountsOutcomes(t *testing.T) {
	s, xff := site(t)
	c := newClient(s.URL, 4)
	defer c.close()
	pw := []string{"ok", "bad", "lock", "boom"}
	src := func(i int64) request { return request{username: "u", password: pw[i%4], ip: "10.0.0.1"} }
	res := saturate(context.Background(), c, src, 4, 10*time.Second, 400)
	if res.Requests != 400 {
		t.Fatalf("requests = %d, want 400 (the max)", res.Requests)
	}
	for _, k := range []string{"success", "wrong_password", "locked", "error"} {
		if res.Outcomes[k] != 100 {
			t.Errorf("%s = %d, want 100 (%+v)", k, res.Outcomes[k], res.Outcomes)
		}
	}
	if res.Errors != 100 || len(res.FirstErrs) == 0 || !strings.Contains(res.FirstErrs[0], "Internal Server Error") {
		t.Errorf("errors = %d %q", res.Errors, res.FirstErrs)
	}
	if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 || res.RPS <= 0 {
		t.Errorf("latencies %+v", res)
	}
	if got := <-xff; got != "10.0.0.1 u" {
		t.Errorf("request carried %q, want X-Forwarded-For 10.0.0.1 and username u", got)
	}
}

func TestConstantRate(t *testing.T) {
	s, _ := site(t)
	c := newClient(s.URL, 4)
	defer c.close()
	start := time.Now()
	res := constantRate(context.Background(), c, successReq, 100, 300*time.Millisecond, 16)
	if res.Requests != 30 || res.Outcomes["wrong_password"] != 30 {
		t.Fatalf("got %+v, want 30 answered requests", res)
	}
	if el := time.Since(start); el < 280*time.Millisecond {
		t.Errorf("30 requests at 100/s took %v, want about 300ms", el)
	}
}

func TestPairedRate(t *testing.T) {
	sa, xa := site(t)
	sb, xb := site(t)
	ca, cb := newClient(sa.URL, 4), newClient(sb.URL, 4)
	defer ca.close()
	defer cb.close()
	ra, rb := pairedRate(context.Background(), ca, cb, successReq, 100, 200*time.Millisecond, 16)
	if ra.Requests != 10 || rb.Requests != 10 {
		t.Fatalf("requests %d and %d, want 10 each", ra.Requests, rb.Requests)
	}
	// Both sides get the same request sequence.
	for range 10 {
		if a, b := <-xa, <-xb; (a == "") != (b == "") {
			t.Fatalf("sides differ: %q %q", a, b)
		}
	}
}

func TestScenarios(t *testing.T) {
	ips := map[string]bool{}
	for i := range int64(100) {
		r := failureReq(i)
		ips[r.ip] = true
		if r.password == userPassword {
			t.Fatal("a failure uses the right password")
		}
	}
	if len(ips) != attackerIPs {
		t.Errorf("flood from %d IPs, want %d", len(ips), attackerIPs)
	}
	if r := scenarios["mixed"](0); r.password != userPassword {
		t.Errorf("mixed request 0 = %+v, want a success", r)
	}
	if r := scenarios["mixed"](1); r.password == userPassword {
		t.Errorf("mixed request 1 = %+v, want a failure", r)
	}
	if n := len(userFlags()); n != 2*users {
		t.Errorf("userFlags has %d entries", n)
	}
}

// TestAxesBaseline checks the SQLite baseline's lockout rule (failure
// limit+1 is the last one verified) and that every attempt is written.
func TestAxesBaseline(t *testing.T) {
	a, err := openAxes(filepath.Join(t.TempDir(), "axes.db"), map[string]string{"alice": "pw"}, 2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer a.db.Close()
	post := func(user, pw, ip string) int {
		form := url.Values{"username": {user}, "password": {pw}}
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "127.0.0.1:1234"
		r.Header.Set("X-Forwarded-For", "203.0.113.9, "+ip)
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		return w.Code
	}
	if c := post("alice", "pw", "192.0.2.1"); c != http.StatusSeeOther {
		t.Fatalf("right password: %d", c)
	}
	want := []int{200, 200, 429, 429}
	for i, w := range want {
		if c := post("mallory", "guess", "192.0.2.2"); c != w {
			t.Errorf("failure %d: status %d, want %d", i+1, c, w)
		}
	}
	// The IP is locked whatever the username; another IP is not.
	if c := post("alice", "pw", "192.0.2.2"); c != http.StatusTooManyRequests {
		t.Errorf("locked IP, right password: %d", c)
	}
	if c := post("alice", "pw", "192.0.2.3"); c != http.StatusSeeOther {
		t.Errorf("other IP: %d", c)
	}
	var n int
	if err := a.db.QueryRow("SELECT COUNT(*) FROM access_attempt").Scan(&n); err != nil || n != 5 {
		t.Errorf("rows = %d (%v), want 5 (the attempts that were verified)", n, err)
	}
	r := httptest.NewRequest(http.MethodGet, "/login", nil)
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<form") {
		t.Errorf("GET /login: %d %q", w.Code, w.Body.String())
	}
}

const sampleBench = `goos: linux
BenchmarkBackend/memory/Attempt/serial-2   100  300 ns/op  1000 ops/s  900 B/op  1 allocs/op
BenchmarkBackend/memory/Attempt/serial-2   100  500 ns/op  1000 ops/s  900 B/op  1 allocs/op
BenchmarkBackend/memory/Attempt/serial-2   100  400 ns/op  1000 ops/s  900 B/op  1 allocs/op
BenchmarkFloor/mutexmap/serial-2           100  100 ns/op
BenchmarkPaired/memory/Attempt-2           100  300 ns/op  400 op-ns  100 floor-ns  4 x-floor
BenchmarkPaired/redis/Attempt-2            100  300 ns/op  20000 op-ns  10000 floor-ns  2 x-floor
BenchmarkBackend/redis/Attempt/parallel-2  100  20000 ns/op
BenchmarkFloor/redis-ping/parallel-2       100  10000 ns/op
BenchmarkBackend/bolt/Failure/parallel-2   100  100 ns/op  12000 ops/s
BenchmarkKeyMemory/memory/counting-2       100  100 ns/op  150 B/key  2 keys/attacker
BenchmarkPeers/memory/defender-attempt/serial-2 100 1000 ns/op
BenchmarkPeers/memory/sethvargo/serial-2   100  200 ns/op
BenchmarkPaired/memory/sethvargo-2         100  9 ns/op  1000 defender-ns  200 peer-ns  5 x-peer
BenchmarkPaired/memory/ulule-2             100  9 ns/op  1200 defender-ns  600 peer-ns  2 x-peer
PASS
`

func TestBenchReport(t *testing.T) {
	s, err := parseBench(strings.NewReader(sampleBench))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.median("BenchmarkBackend/memory/Attempt/serial", "ns/op"); v != 400 {
		t.Errorf("median = %v, want 400", v)
	}
	md := benchMarkdown(s)
	for _, want := range []string{
		"| memory: whole attempt ≤ 2× mutex map, ≤ 2 allocs | memory Attempt serial, paired | 400 ns vs mutex map 100 ns; 1 allocs | ×4.00 | **not met** |",
		"| redis: whole attempt ≤ 2.5× PING | redis Attempt serial, paired | 20.0 µs vs PING 10.0 µs | ×2.00 | met |",
		"| redis: throughput under RunParallel vs PING (reference) | redis Attempt parallel | 20.0 µs vs 10.0 µs per op | ×2.00 | — |",
		"12000 attempts/s | ×1.20 of 10,000 | met |",
		"| memory serial, paired with sethvargo | defender 1.0 µs vs sethvargo 200 ns | ×5.00 | **not met** |",
		"| vs ulule (reference) | memory, paired | defender 1.2 µs vs ulule 600 ns | ×2.00 | — |",
		"| memory | counting | 150 | 2.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("bench.md lacks %q:\n%s", want, md)
		}
	}
	dir := t.TempDir()
	for _, n := range []string{"bench.txt", "peers.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(sampleBench), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	if err := runReport([]string{"-bench", filepath.Join(dir, "bench.txt"), "-peers", filepath.Join(dir, "peers.txt"), "-out", dir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"bench.md", "peers.png"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

func TestLoadReport(t *testing.T) {
	cell := func(b, sc, mode string, p50, p99, rps float64) Cell {
		return Cell{Backend: b, Scenario: sc, Mode: mode, Rate: 10, Workers: 8, Result: Result{P50: p50, P99: p99, RPS: rps, Outcomes: map[string]int64{"success": 1}}}
	}
	r := Report{Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), CPUs: 2, Duration: "6s", Cells: []Cell{
		cell("none", "success", "rate", 60, 70, 10), cell("none", "failure", "saturation", 60, 70, 30),
		cell("memory", "success", "rate", 60.3, 70.5, 10), cell("memory", "failure", "saturation", 1, 2, 3000),
		cell("axes", "success", "rate", 70, 90, 10), cell("axes", "failure", "saturation", 100, 200, 20),
		cell("bolt", "success", "paired", 66, 70, 10),
	}}
	r.Cells[len(r.Cells)-1].Baseline = &Result{P50: 60, P99: 70}
	md := loadMarkdown(r)
	for _, want := range []string{
		"| defender memory | p50 60.30 ms vs 60.00, p99 70.50 ms vs 70.00 (consecutive cells) | p50 ×1.005, p99 ×1.007 | met |",
		"| defender bolt | p50 66.00 ms vs 60.00, p99 70.00 ms vs 70.00 (interleaved) | p50 ×1.100, p99 ×1.000 | **not met** |",
		"| failure flood: throughput ≥ 20× --no-defender | defender memory | 3000 req/s vs 30.0 | ×100.0 | met |",
		"(reference) failure flood vs --no-defender | axes-like (SQLite)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("loadtest.md lacks %q:\n%s", want, md)
		}
	}
	dir := t.TempDir()
	if err := writeLoadReport(r, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"loadtest.md", "loadtest-latency-p50.png", "loadtest-latency-p99.png", "loadtest-flood.png"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

func TestRootDir(t *testing.T) {
	wd, _ := os.Getwd()
	root, err := rootDir(wd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "defender")); err != nil {
		t.Errorf("root %s has no cmd/defender: %v", root, err)
	}
	if _, err := rootDir("/"); err == nil {
		t.Error("rootDir(/) found a repository")
	}
}
