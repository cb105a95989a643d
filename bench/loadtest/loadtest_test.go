package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   outcome
	}{
		{303, outSuccess}, {302, outSuccess}, {200, outWrong}, {401, outWrong},
		{429, outLocked}, {403, outLocked}, {503, outUnavailable}, {500, outError},
	} {
		if got, _ := classify(tc.status, http.Header{}, ""); got != tc.want {
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
	t.Parallel()
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

// TestMain runs the program's server subcommands when run re-executes
// the test binary as its own (os.Executable) in TestRunShort.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "bare-server" || os.Args[1] == "axes-server") {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestClassifyReasons(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	const lockout = "/locked-out"
	for _, tc := range []struct {
		name    string
		status  int
		h       http.Header
		want    outcome
		wantErr string
	}{
		{"locked page", 429, hdr(reasonHeader, "locked", "Retry-After", "300"), outLocked, ""},
		{"locked redirect", 303, hdr(reasonHeader, "locked", "Location", lockout), outLocked, ""},
		{"locked custom status", 403, hdr(reasonHeader, "locked"), outLocked, ""},
		{"refused before verification", 429, hdr(reasonHeader, "refused"), outLocked, ""},
		{"shed", 503, hdr(reasonHeader, "shed", "Retry-After", "1"), outShed, ""},
		{"unavailable", 503, hdr(reasonHeader, "unavailable"), outUnavailable, ""},
		{"503 without a reason", 503, hdr(), outUnavailable, ""},
		{"redirect to the lockout URL without a reason", 303, hdr("Location", lockout), outLocked, ""},
		{"redirect home", 303, hdr("Location", "/"), outSuccess, ""},
		{"wrong password", 200, hdr(), outWrong, ""},
		{"shed on a 200", 200, hdr(reasonHeader, "shed"), outError, `HTTP 200 with X-Defender-Reason "shed"`},
		{"unavailable on a 429", 429, hdr(reasonHeader, "unavailable"), outError, `HTTP 429 with X-Defender-Reason "unavailable"`},
		{"locked on a 200", 200, hdr(reasonHeader, "locked"), outError, `HTTP 200 with X-Defender-Reason "locked"`},
		{"locked on a 503", 503, hdr(reasonHeader, "locked"), outError, `HTTP 503 with X-Defender-Reason "locked"`},
		{"unknown reason", 429, hdr(reasonHeader, "tired"), outError, `unknown X-Defender-Reason "tired"`},
		{"server error", 500, hdr(), outError, "HTTP 500 Internal Server Error"},
	} {
		got, err := classify(tc.status, tc.h, lockout)
		if got != tc.want {
			t.Errorf("%s: classify = %v, want %v", tc.name, got, tc.want)
		}
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	// Without a lockout URL every redirect is a login.
	if got, _ := classify(303, hdr("Location", lockout), ""); got != outSuccess {
		t.Errorf("redirect without a configured lockout URL = %v, want success", got)
	}
}

func TestUnexpected(t *testing.T) {
	for _, tc := range []struct {
		want expect
		r    response
		err  string // "" = not an error
	}{
		{expectSuccess, response{o: outSuccess, status: 303}, ""},
		{expectSuccess, response{o: outShed, status: 503, reason: "shed"}, ""},
		{expectSuccess, response{o: outLocked, status: 429, reason: "locked"}, "the right password answered locked (HTTP 429, X-Defender-Reason: locked)"},
		{expectSuccess, response{o: outLocked, status: 429}, "the right password answered locked (HTTP 429)"},
		{expectSuccess, response{o: outUnavailable, status: 503}, "the right password answered unavailable (HTTP 503)"},
		{expectSuccess, response{o: outWrong, status: 200}, "the right password answered wrong_password (HTTP 200)"},
		{expectFailure, response{o: outSuccess, status: 303}, "a wrong password logged in (HTTP 303)"},
		{expectFailure, response{o: outLocked, status: 429}, ""},
		{expectFailure, response{o: outUnavailable, status: 503}, ""},
		{expectFailure, response{o: outShed, status: 503}, ""},
		{expectAny, response{o: outLocked, status: 429}, ""},
		{expectAny, response{o: outError, err: &statusError{500}}, "HTTP 500 Internal Server Error"},
		{expectFailure, response{o: outError}, "error"},
	} {
		if got := unexpected(tc.want, tc.r); got != tc.err {
			t.Errorf("unexpected(%d, %+v) = %q, want %q", tc.want, tc.r, got, tc.err)
		}
	}
}

// reasonSite answers like the demo with X-Defender-Reason: the password
// "ok" logs in, "lock" is locked, "shed" shed, "down" unavailable.
func reasonSite(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		switch r.PostFormValue("password") {
		case "ok":
			w.Header().Set("Location", "/")
			w.WriteHeader(http.StatusSeeOther)
		case "lock":
			w.Header().Set(reasonHeader, "locked")
			w.WriteHeader(http.StatusTooManyRequests)
		case "shed":
			w.Header().Set(reasonHeader, "shed")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "down":
			w.Header().Set(reasonHeader, "unavailable")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestLegitimateErrors: in an all-success load, every locked or
// unavailable answer is an error, a shed one is not.
func TestLegitimateErrors(t *testing.T) {
	s := reasonSite(t)
	c := newClient(s.URL, 4)
	defer c.close()
	pw := []string{"ok", "lock", "shed", "down"}
	src := func(i int64) request {
		return request{username: "u", password: pw[i%4], ip: "10.0.0.1", want: expectSuccess}
	}
	res := saturate(context.Background(), c, src, 4, 10*time.Second, 400)
	for _, k := range []string{"success", "locked", "shed", "unavailable"} {
		if res.Outcomes[k] != 100 {
			t.Errorf("%s = %d, want 100 (%+v)", k, res.Outcomes[k], res.Outcomes)
		}
	}
	if res.Errors != 200 {
		t.Errorf("errors = %d, want 200 (the locked and unavailable answers)", res.Errors)
	}
	if res.Reasons["locked"] != 100 || res.Reasons["shed"] != 100 || res.Reasons["unavailable"] != 100 {
		t.Errorf("reasons %v", res.Reasons)
	}
	if len(res.FirstErrs) == 0 || !strings.Contains(strings.Join(res.FirstErrs, ";"), "the right password answered") {
		t.Errorf("first errors %q", res.FirstErrs)
	}
	// The same answers to wrong passwords are not errors.
	wrong := func(i int64) request { r := src(i); r.want = expectFailure; r.password += "x"; return r }
	if res := saturate(context.Background(), c, wrong, 2, 10*time.Second, 40); res.Errors != 0 || res.Outcomes["wrong_password"] != 40 {
		t.Errorf("wrong passwords: %+v", res)
	}
}

func TestStuffingRequests(t *testing.T) {
	ips, names, pairs := map[string]int{}, map[string]int{}, map[string]int{}
	const n = 200000 // the default -max
	for i := range int64(n) {
		r := stuffingReq(i)
		if r.want != expectFailure || r.password == userPassword {
			t.Fatalf("request %d = %+v, want a wrong password", i, r)
		}
		ips[r.ip]++
		names[r.username]++
		pairs[r.ip+" "+r.username]++
	}
	for what, m := range map[string]map[string]int{"address": ips, "username": names, "pair": pairs} {
		for k, v := range m {
			if v > failureLimit-1 {
				t.Fatalf("%s %q makes %d attempts, want at most %d (under the limit)", what, k, v, failureLimit-1)
			}
		}
	}
	if len(ips) < n/(failureLimit-1) || len(names) < n/(failureLimit-1) {
		t.Errorf("%d addresses and %d usernames for %d attempts", len(ips), len(names), n)
	}
	// The attack never touches a legitimate identity or the flood's.
	for i := range int64(users) {
		l := legitReq(i)
		if ips[l.ip] > 0 || names[l.username] > 0 || l.password != userPassword || l.want != expectSuccess {
			t.Errorf("legitimate login %+v shares an identity with the attack or is not a success", l)
		}
	}
	if ips[lockedIP] > 0 || names[lockedUser] > 0 {
		t.Error("the attack uses the locked flood's identity")
	}
	if a, b := legitReq(0), legitReq(users); a != b {
		t.Errorf("a legitimate user changes address: %+v, %+v", a, b)
	}
}

// TestStuffing: the legitimate logins run at their rate while the attack
// saturates, and the attack goes on until the last one is answered.
func TestStuffing(t *testing.T) {
	var legitN atomic.Int64
	afterLast := make(chan struct{})
	var once sync.Once
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.PostFormValue("password") == userPassword {
			if legitN.Add(1) == 6 {
				// Answer the last legitimate login only once an attack
				// request has come after it.
				select {
				case <-afterLast:
				case <-time.After(10 * time.Second):
					t.Error("no attack request came after the last legitimate login")
				}
			}
			w.Header().Set("Location", "/")
			w.WriteHeader(http.StatusSeeOther)
			return
		}
		if legitN.Load() == 6 {
			once.Do(func() { close(afterLast) })
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer s.Close()
	ca, cl := newClient(s.URL, 4), newClient(s.URL, 4)
	defer ca.close()
	defer cl.close()
	a, l := stuffing(context.Background(), ca, cl, 4, 20, 300*time.Millisecond)
	if l.Requests != 6 || l.Outcomes["success"] != 6 || l.Errors != 0 {
		t.Errorf("legitimate logins %+v, want 6 successes", l)
	}
	if a.Requests == 0 || a.Outcomes["wrong_password"] != a.Requests || a.Errors != 0 {
		t.Errorf("attack %+v", a)
	}
}

func TestParseAdmissions(t *testing.T) {
	as, err := parseAdmissions("off, on,3:0:250ms", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []admission{
		{"off", []string{"DEFENDER_VERIFY_CONCURRENCY=0"}},
		{"4/8/1s", []string{"DEFENDER_VERIFY_CONCURRENCY=4", "DEFENDER_VERIFY_QUEUE=8", "DEFENDER_VERIFY_QUEUE_TIMEOUT=1s"}},
		{"3/0/250ms", []string{"DEFENDER_VERIFY_CONCURRENCY=3", "DEFENDER_VERIFY_QUEUE=0", "DEFENDER_VERIFY_QUEUE_TIMEOUT=250ms"}},
	}
	if fmt.Sprint(as) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", as, want)
	}
	for _, bad := range []string{"", "maybe", "4:8", "0:8:1s", "4:-1:1s", "4:8:0s", "4:8:soon", "x:8:1s", "off,off", "on,4:8:1s"} {
		if _, err := parseAdmissions(bad, 2); err == nil || !strings.Contains(err.Error(), "-admission") {
			t.Errorf("parseAdmissions(%q) = %v, want an error naming -admission", bad, err)
		}
	}
}

func TestParseWorkers(t *testing.T) {
	ws, err := parseWorkers("8, 16,32")
	if err != nil || fmt.Sprint(ws) != "[8 16 32]" {
		t.Errorf("got %v %v", ws, err)
	}
	for _, bad := range []string{"8,x", "0", "-1", "8,8"} {
		if _, err := parseWorkers(bad); err == nil || !strings.Contains(err.Error(), "-workers") {
			t.Errorf("parseWorkers(%q) = %v, want an error naming -workers", bad, err)
		}
	}
}

func TestRunFlagErrors(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"-workers 8,zero", "-workers"},
		{"-admission sometimes", "-admission"},
		{"-scenarios stuffed", `unknown scenario "stuffed"`},
		{"-modes burst", `unknown mode "burst"`},
		{"-duration 0s", "-duration"},
		{"-legit-rate 0", "-legit-rate"},
		{"-stuffing-workers 0", "-stuffing-workers"},
		{"-locked-workers 0", "-locked-workers"},
		{"extra", `unexpected argument "extra"`},
	} {
		err := runLoad(context.Background(), strings.Fields(tc.args), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %s: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// TestBlock: the locked flood starts only once its identity is blocked.
func TestBlock(t *testing.T) {
	var n atomic.Int64
	blocking := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Forwarded-For") != lockedIP {
			t.Errorf("request from %q", r.Header.Get("X-Forwarded-For"))
		}
		if n.Add(1) > failureLimit {
			w.Header().Set(reasonHeader, "locked")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer blocking.Close()
	c := newClient(blocking.URL, 1)
	defer c.close()
	if err := block(context.Background(), c); err != nil {
		t.Errorf("block: %v", err)
	}
	if n.Load() != failureLimit+2 {
		t.Errorf("%d requests, want limit+1 failures and the check", n.Load())
	}
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer never.Close()
	c2 := newClient(never.URL, 1)
	defer c2.close()
	if err := block(context.Background(), c2); err == nil || !strings.Contains(err.Error(), "is not blocked: the next attempt was answered wrong_password (HTTP 200)") {
		t.Errorf("block on a site that never blocks: %v", err)
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer down.Close()
	c3 := newClient(down.URL, 1)
	defer c3.close()
	if err := block(context.Background(), c3); err == nil || !strings.Contains(err.Error(), "failure 1 of 4") {
		t.Errorf("block on a failing site: %v", err)
	}
}

func TestBareHandler(t *testing.T) {
	w := httptest.NewRecorder()
	bareLocked(w, httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("username=u&password=p")))
	if o, err := classify(w.Code, w.Header(), ""); o != outLocked || err != nil || w.Body.Len() != 0 {
		t.Errorf("bare handler: %d %v (%v, %v), body %q", w.Code, w.Header(), o, err, w.Body.String())
	}
}

func TestDirSize(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "spool"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, n := range map[string]int{"a.jsonl": 100, "a.jsonl.1": 20, "spool/seg": 7} {
		if err := os.WriteFile(filepath.Join(dir, p), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := dirSize(dir); n != 127 || err != nil {
		t.Errorf("dirSize = %d, %v, want 127", n, err)
	}
	if n, err := settledSize(context.Background(), dir); n != 127 || err != nil {
		t.Errorf("settledSize = %d, %v, want 127", n, err)
	}
	if _, err := dirSize(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("dirSize of a missing directory: %v, want 0 bytes", err)
	}
}

func TestMergeCells(t *testing.T) {
	prev := []Cell{
		{Backend: "memory", Scenario: "success", Mode: "saturation", Workers: 8},
		{Backend: "memory", Scenario: "success", Mode: "saturation", Workers: 16},
		{Backend: "memory", Scenario: "stuffing", Mode: "attack", Workers: 32, Admission: "off"},
		{Backend: "memory", Scenario: "stuffing", Mode: "attack", Workers: 32, Admission: "4/8/1s"},
		{Backend: "memory", Scenario: "locked", Mode: "flood", Workers: 8},
	}
	cur := []Cell{
		{Backend: "memory", Scenario: "success", Mode: "saturation", Workers: 16, Result: Result{Requests: 1}},
		{Backend: "memory", Scenario: "stuffing", Mode: "attack", Workers: 32, Admission: "off", Result: Result{Requests: 1}},
	}
	var got []string
	for _, c := range mergeCells(prev, cur) {
		got = append(got, fmt.Sprintf("%s/%d/%s/%d", c.Scenario, c.Workers, c.Admission, c.Result.Requests))
	}
	want := "[success/8//0 stuffing/32/4/8/1s/0 locked/8//0 success/16//1 stuffing/32/off/1]"
	if fmt.Sprint(got) != want {
		t.Errorf("merged %v, want %s", got, want)
	}
}

func TestLoadReportNewCells(t *testing.T) {
	res := func(rps float64, out map[string]int64, errs int64) Result {
		return Result{RPS: rps, P50: 80, P99: 200, Requests: 10, Outcomes: out, Errors: errs}
	}
	legitOff := Result{Requests: 16, P50: 900, P99: 2000, Outcomes: map[string]int64{"success": 15, "locked": 1}, Errors: 1}
	legitOn := Result{Requests: 16, P50: 300, P99: 500, Outcomes: map[string]int64{"success": 14, "shed": 2}}
	bare := Result{RPS: 10000}
	r := Report{Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), CPUs: 2, Duration: "8s", Cells: []Cell{
		{Backend: "memory", Scenario: "success", Mode: "saturation", Workers: 8, Result: res(20, map[string]int64{"success": 10}, 0)},
		{Backend: "memory", Scenario: "success", Mode: "saturation", Workers: 16, Result: res(21, map[string]int64{"success": 7, "unavailable": 2, "locked": 1}, 3)},
		{Backend: "memory", Scenario: "success", Mode: "saturation", Workers: 32, Result: res(22, map[string]int64{"success": 8, "shed": 2}, 0)},
		{Backend: "memory", Scenario: "stuffing", Mode: "attack", Workers: 32, Rate: 2, Admission: "off", Result: res(25, map[string]int64{"wrong_password": 10}, 0), Legit: &legitOff},
		{Backend: "memory", Scenario: "stuffing", Mode: "attack", Workers: 32, Rate: 2, Admission: "4/8/1s", Result: res(900, map[string]int64{"wrong_password": 3, "shed": 7}, 0), Legit: &legitOn},
		{Backend: "memory", Scenario: "locked", Mode: "flood", Workers: 8, Result: res(8500, map[string]int64{"locked": 10}, 0), Baseline: &bare, RatioToBare: 0.85, Audit: &AuditGrowth{Bytes: 300, PerRequest: 3.5}},
		{Backend: "axes", Scenario: "locked", Mode: "flood", Workers: 8, Result: res(5000, map[string]int64{"locked": 10}, 0), Baseline: &bare, RatioToBare: 0.5},
	}}
	md := loadMarkdown(r)
	for _, want := range []string{
		"| site | scenario | 8 clients | 16 clients | 32 clients |",
		"| defender memory | success | 20.0 req/s, 0 errors | 21.0 req/s, 3 errors; 1 locked, 2 unavailable | 22.0 req/s, 0 errors; 2 shed |",
		"| defender memory | off | 25.0 (32 clients) | 0 | 16 at 2/s | 900.00 | 2000.00 | — | 1 | 0 |",
		"| defender memory | 4/8/1s | 900.0 (32 clients) | 7 | 16 at 2/s | 300.00 | 500.00 | ×0.25 | 0 | 2 |",
		"| locked flood: throughput ≥ 0.8× a bare 429 handler | defender memory | 8500 req/s vs 10000 (8 clients) | ×0.850 | met |",
		"| (reference) locked flood vs a bare 429 handler | axes-like (SQLite) | 5000 req/s vs 10000 (8 clients) | ×0.500 | — |",
		"| defender memory | 8 | 8500 | 10000 | ×0.850 | 3.50 (300 B) | 10 of 10 | 0 |",
		"| axes-like (SQLite) | 8 | 5000 | 10000 | ×0.500 | — | 10 of 10 | 0 |",
		"| defender memory | stuffing | 32 attackers + 2 req/s legitimate, admission 4/8/1s | 900.0 |",
		"| defender memory | locked | 8 clients, one blocked identity | 8500.0 |",
		"loadtest-saturation.png", "loadtest-stuffing.png", "loadtest-locked.png",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("loadtest.md lacks %q:\n%s", want, md)
		}
	}
	dir := t.TempDir()
	if err := writeLoadReport(r, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"loadtest-saturation.png", "loadtest-stuffing.png", "loadtest-locked.png", "loadtest-flood.png"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

// TestRunShort runs the load test for real, briefly: the demo built from
// this repository with --no-defender and on the memory store, saturation
// at two client counts, credential stuffing with and without admission
// control, the locked flood against the bare handler (this test binary,
// re-executed as bare-server).
func TestRunShort(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	var log strings.Builder
	err := runLoad(context.Background(), []string{
		"-backends", "none,memory", "-scenarios", "success,stuffing,locked", "-modes", "saturation",
		"-workers", "1,2", "-stuffing-workers", "2", "-legit-rate", "10", "-admission", "off,2:2:1s",
		"-locked-workers", "2", "-duration", "500ms", "-paired=false", "-out", out,
	}, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Log(log.String())
	b, err := os.ReadFile(filepath.Join(out, "loadtest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range rep.Cells {
		got = append(got, c.key())
		x := c.Result
		var sum int64
		for _, n := range x.Outcomes {
			sum += n
		}
		// A closed loop on a busy machine may get no answer within the
		// cell; the counts must add up whatever.
		if sum != x.Requests {
			t.Errorf("%s: %d requests, outcomes %v", c.key(), x.Requests, x.Outcomes)
		}
		switch c.Scenario {
		case "success":
			// Every answer but a login or a shed one is an error.
			if bad := x.Requests - x.Outcomes["success"] - x.Outcomes["shed"]; x.Errors != bad {
				t.Errorf("%s: errors %d, want %d (%v)", c.key(), x.Errors, bad, x.Outcomes)
			}
		case "stuffing":
			if c.Legit == nil || c.Legit.Requests == 0 || c.Rate != 10 || c.Workers != 2 {
				t.Errorf("%s: legitimate logins %+v", c.key(), c.Legit)
			} else if bad := c.Legit.Requests - c.Legit.Outcomes["success"] - c.Legit.Outcomes["shed"]; c.Legit.Errors != bad {
				t.Errorf("%s: legitimate errors %d, want %d (%v)", c.key(), c.Legit.Errors, bad, c.Legit.Outcomes)
			}
			if x.Outcomes["success"] != 0 {
				t.Errorf("%s: a stuffed password logged in", c.key())
			}
		case "locked":
			// The flood's identity is blocked: every answer is locked.
			if x.Requests == 0 || x.Outcomes["locked"] != x.Requests || x.Errors != 0 {
				t.Errorf("%s: %v, %d errors %q", c.key(), x.Outcomes, x.Errors, x.FirstErrs)
			}
			if c.Baseline == nil || c.Baseline.Outcomes["locked"] != c.Baseline.Requests || c.Baseline.RPS <= 0 || c.RatioToBare <= 0 {
				t.Errorf("%s: bare handler %+v, ratio %v", c.key(), c.Baseline, c.RatioToBare)
			}
			// The audit log records the blocking, at least: it exists.
			if c.Audit == nil || c.Audit.Bytes < 0 {
				t.Errorf("%s: audit %+v", c.key(), c.Audit)
			}
		}
	}
	want := "[none|success|saturation|1| none|success|saturation|2| none|stuffing|attack|2|off none|stuffing|attack|2|2/2/1s memory|success|saturation|1| memory|success|saturation|2| memory|stuffing|attack|2|off memory|stuffing|attack|2|2/2/1s memory|locked|flood|2|]"
	if fmt.Sprint(got) != want {
		t.Errorf("cells %v, want %s", got, want)
	}
	md, err := os.ReadFile(filepath.Join(out, "loadtest.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Saturation by concurrent clients", "## Credential stuffing", "## Locked flood", "| defender memory | 2 |"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("loadtest.md lacks %q", s)
		}
	}
}
