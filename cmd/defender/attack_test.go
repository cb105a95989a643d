package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The tests of this file replay the outside attack pass against the demo
// (issue 12), as black-box requests: alice is locked, then each request
// tries to get alice's right password checked anyway. A 303 means it was.

// attackModes are the lockout modes the attacks run in: pair mode and
// username-only mode, where a differential gives unlimited guesses, and the
// default mode behind a proxy (so that every request can come from a new
// IP, leaving only the username counter).
var attackModes = []struct {
	name string
	env  []string
	ip   func(i int) string // X-Forwarded-For of request i ("" = the socket peer)
}{
	{"pair", []string{"DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME=true"}, func(int) string { return "" }},
	{"username only", []string{"DEFENDER_DISABLE_IP_LOCKOUT=true"}, func(int) string { return "" }},
	{"default, new IP each time", []string{"DEFENDER_BEHIND_REVERSE_PROXY=true"}, func(i int) string { return fmt.Sprintf("198.51.100.%d", i%250+1) }},
}

// lockAlice fails alice's password until she is locked, from ip.
func lockAlice(t *testing.T, d *demo, ip string) {
	t.Helper()
	c := client()
	for i := 0; i < 4; i++ {
		d.login(t, c, "alice", "wrong", xff(ip)...)
	}
	if r := d.login(t, c, "alice", "wonderland", xff(ip)...); r.code != 429 {
		t.Fatalf("alice not locked: %d", r.code)
	}
}

func xff(ip string) []string {
	if ip == "" {
		return nil
	}
	return []string{"X-Forwarded-For", ip}
}

func post(t *testing.T, d *demo, path, ctype string, body io.Reader, ip string) reply {
	t.Helper()
	hdr := append([]string{"Content-Type", ctype, "Accept", "application/json"}, xff(ip)...)
	return do(t, client(), "POST", d.URL+path, body, hdr...)
}

// TestAttackJSONDecoyKeys: a JSON body naming alice under the exact key and
// a decoy under a case variant (or of another JSON type) is refused, never
// checked.
func TestAttackJSONDecoyKeys(t *testing.T) {
	t.Parallel()
	for _, m := range attackModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			d := memoryDemo(t, m.env...)
			lockAlice(t, d, m.ip(0))
			for i, decoy := range []string{`"USERNAME":"decoy"`, `"UserName":"decoy"`, `"USERNAME":42`,
				`"USERNAME":null`, `"USERNAME":{"a":1}`, `"USERNAME":["decoy"]`, `"Username":true`,
				`"uſername":"decoy"`, `"ｕｓｅｒｎａｍｅ":"decoy"`, `"username":"decoy"`} {
				for _, body := range []string{
					`{"username":"alice","password":"wonderland",` + decoy + `}`,
					`{` + decoy + `,"username":"alice","password":"wonderland"}`,
				} {
					r := post(t, d, "/login", "application/json", strings.NewReader(body), m.ip(i+1))
					if r.code == 303 || r.code == 302 {
						t.Fatalf("%s: alice's password was checked and accepted (%d)", body, r.code)
					}
					if r.code != 400 && r.code != 429 {
						t.Fatalf("%s: %d %s", body, r.code, r.body)
					}
				}
			}
		})
	}
}

// TestAttackQueryPlusBody: the username in the query string and in the
// body (form or multipart) is refused, never checked.
func TestAttackQueryPlusBody(t *testing.T) {
	t.Parallel()
	for _, m := range attackModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			d := memoryDemo(t, m.env...)
			lockAlice(t, d, m.ip(0))
			var mp bytes.Buffer
			w := multipart.NewWriter(&mp)
			w.WriteField("username", "alice")
			w.WriteField("password", "wonderland")
			w.Close()
			for i, q := range []string{"?username=decoy", "?USERNAME=decoy", "?username=alice", "?username=decoy&username=alice"} {
				for _, b := range []struct {
					ctype string
					body  string
				}{
					{w.FormDataContentType(), mp.String()},
					{formCT, "username=alice&password=wonderland"},
					{"application/json", `{"username":"alice","password":"wonderland"}`},
				} {
					r := post(t, d, "/login"+q, b.ctype, strings.NewReader(b.body), m.ip(i+1))
					if r.code == 303 || r.code == 302 {
						t.Fatalf("%s + %s body: alice's password accepted", q, b.ctype)
					}
				}
			}
			// Duplicates within one body, and a body the middleware does not read.
			for i, b := range []struct{ ctype, body string }{
				{formCT, "username=decoy&username=alice&password=wonderland"},
				{formCT, "username=alice&USERNAME=decoy&password=wonderland"},
				{"text/plain", "username=alice&password=wonderland"},
			} {
				if r := post(t, d, "/login", b.ctype, strings.NewReader(b.body), m.ip(i+10)); r.code == 303 || r.code == 302 {
					t.Fatalf("%q: alice's password accepted", b.body)
				}
			}
		})
	}
}

// TestAttackPadding: padding is trimmed before any length bound, so a
// padded alice is alice; a name over the bound is refused, never cut, so
// two long names never share a counter.
func TestAttackPadding(t *testing.T) {
	t.Parallel()
	d := memoryDemo(t, "DEFENDER_DISABLE_IP_LOCKOUT=true")
	c := client()
	padded := strings.Repeat(" ", 1030) + "alice"
	for i := 0; i < 4; i++ {
		d.login(t, c, padded, "wrong")
	}
	for _, u := range []string{"alice", padded, "\t" + padded + "\n"} {
		if r := d.login(t, c, u, "wonderland"); r.code != 429 {
			t.Fatalf("%d-byte alice after 4 padded failures: %d, want 429", len(u), r.code)
		}
	}
	long1 := strings.Repeat("x", 1030) + "1"
	long2 := strings.Repeat("x", 1030) + "2"
	for _, u := range []string{long1, long2} {
		if r := d.login(t, c, u, "wrong"); r.code != 400 {
			t.Fatalf("a %d-byte name: %d, want 400", len(u), r.code)
		}
	}
}

// TestAttackCaseVariants: every spelling that common Go comparisons take
// for alice counts as alice and is locked with her.
func TestAttackCaseVariants(t *testing.T) {
	t.Parallel()
	d := memoryDemo(t, "DEFENDER_DISABLE_IP_LOCKOUT=true")
	c := client()
	for i := 0; i < 4; i++ {
		d.login(t, c, "alİce", "wrong") // U+0130: strings.ToLower gives "alice"
	}
	for _, u := range []string{"alice", "alİce", "ALİCE", "alıce", "ALICE", "ａｌｉｃｅ", "ali\u0307ce", " Alice "} {
		if r := d.login(t, c, u, "wonderland"); r.code != 429 {
			t.Fatalf("%q after alİce was locked: %d, want 429", u, r.code)
		}
	}
}

// TestAttackHangUp: a complete login body one byte short of its
// Content-Length, then a half-close, is abandoned: no password check, no
// store event, in fail mode open as in closed, on the embedded store and in
// memory.
func TestAttackHangUp(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"bolt", "memory"} {
		for _, mode := range []string{"open", "closed"} {
			t.Run(store+"/"+mode, func(t *testing.T) {
				t.Parallel()
				env := []string{"DEFENDER_DISABLE_IP_LOCKOUT=true", "DEFENDER_FAIL_MODE=" + mode}
				args := []string{"--user", "alice:wonderland", "--admin", "root:hunter2"}
				if store == "memory" {
					args = append(args, "--store", "memory://")
				}
				d := startDemo(t, "", env, args...)
				lockAlice(t, d, "")
				host := strings.TrimPrefix(d.URL, "http://")
				for i := 0; i < 20; i++ {
					ctype, body := formCT, "username=alice&password=wonderland"
					if i%2 == 1 {
						ctype, body = "application/json", `{"username":"alice","password":"wonderland"}`
					}
					conn, err := net.Dial("tcp", host)
					if err != nil {
						t.Fatal(err)
					}
					fmt.Fprintf(conn, "POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
						host, ctype, len(body)+1, body)
					conn.(*net.TCPConn).CloseWrite()
					conn.SetReadDeadline(time.Now().Add(10 * time.Second))
					resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
					if err == nil {
						if resp.StatusCode == 303 || resp.StatusCode == 302 {
							t.Fatalf("a hung-up request had alice's password checked and accepted")
						}
						resp.Body.Close()
					}
					conn.Close()
				}
				// Another client still gets the lockout; the log has no outage.
				if r := d.login(t, client(), "alice", "wonderland"); r.code != 429 {
					t.Fatalf("alice: %d", r.code)
				}
				if log := d.stderr.String(); strings.Contains(log, "store failed") || strings.Contains(log, "store recovered") {
					t.Fatalf("a hang-up was reported as a store outage:\n%s", log)
				}
			})
		}
	}
}

// TestAttackAdminSignIn: guessing the admin's password is locked out like
// any login, and counted.
func TestAttackAdminSignIn(t *testing.T) {
	t.Parallel()
	d := memoryDemo(t)
	c := client()
	codes := map[int]int{}
	for i := 0; i < 50; i++ {
		r := do(t, c, "GET", d.URL+"/admin/defender/api/blocks", nil, "auth", fmt.Sprintf("root:guess%d", i))
		codes[r.code]++
	}
	if codes[401] > 3 || codes[429] < 46 {
		t.Fatalf("50 admin guesses: %v, want at most 3 answered 401, the rest 429", codes)
	}
	if r := do(t, c, "GET", d.URL+"/admin/defender/api/blocks", nil, "auth", "root:hunter2"); r.code != 429 {
		t.Fatalf("the right admin password while locked: %d", r.code)
	}
}

// TestAttackMisspeltSetting: a misspelt DEFENDER_* setting stops the demo
// with an error naming it and the setting meant, instead of running in
// another mode than the operator asked for.
func TestAttackMisspeltSetting(t *testing.T) {
	t.Parallel()
	r := runCLI(t, t.TempDir(), []string{"DEFENDER_LOCKOUT_BY_IP_USERNAME=true"}, "demo", "--store", "memory://", "--addr", "127.0.0.1:0")
	if r.code != 2 || !strings.Contains(r.stderr, "DEFENDER_LOCKOUT_BY_IP_USERNAME") ||
		!strings.Contains(r.stderr, "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}
