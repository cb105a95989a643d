package defender

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/backend/memory"
)

// A login request shape, built from a script of small numbers (so that the
// same generator serves the property test and the fuzz target).
type shape struct {
	ctype string   // media type of the body ("" = no body)
	query []member // in the URL
	body  []member // in the body
	raw   string   // a raw body instead of members (malformed cases)
}

type member struct {
	key string
	val any // string, or a JSON value of another type
}

var (
	shapeTypes = []string{"", "application/x-www-form-urlencoded", "multipart/form-data", "application/json",
		"application/vnd.api+json", "text/plain", "application/xml"}
	shapeKeys = []string{"username", "username", "username", "USERNAME", "UserName", "uſername", "ｕｓｅｒｎａｍｅ",
		"username ", "password", "other", "user"}
	shapeVals = []any{"alice", "bob", "Alice", " alice ", "alİce", "ALICE", "ａｌｉｃｅ", "", "decoy",
		42, nil, map[string]any{"a": 1}, []any{"alice"}, true, "file:"}
	shapeRaws = []string{`{"username":"alice"`, `{"username":"alice"}{"username":"bob"}`, `["alice"]`, `username=alice;x=1`,
		`{"username":"alice"} x`, `%zz=1`, "\xff\xfe"}
)

// shapeFrom turns a script into a shape; every byte picks something.
func shapeFrom(script []byte) shape {
	next := func(n int) int {
		if len(script) == 0 {
			return 0
		}
		b := script[0]
		script = script[1:]
		return int(b) % n
	}
	var s shape
	s.ctype = shapeTypes[next(len(shapeTypes))]
	for i, n := 0, next(3); i < n; i++ {
		s.query = append(s.query, member{shapeKeys[next(len(shapeKeys))], shapeVals[next(9)]})
	}
	if s.ctype != "" {
		if next(8) == 0 {
			s.raw = shapeRaws[next(len(shapeRaws))]
		}
		for i, n := 0, next(4); i < n; i++ {
			s.body = append(s.body, member{shapeKeys[next(len(shapeKeys))], shapeVals[next(len(shapeVals))]})
		}
	}
	return s
}

func (s shape) request(t testing.TB) *http.Request {
	q := url.Values{}
	for _, m := range s.query {
		q.Add(m.key, fmt.Sprint(m.val))
	}
	target := "/login"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	var body io.Reader
	ctype := s.ctype
	switch {
	case s.ctype == "":
	case s.raw != "":
		body = strings.NewReader(s.raw)
	case s.ctype == "multipart/form-data":
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for _, m := range s.body {
			if v, ok := m.val.(string); ok && v == "file:" {
				fw, _ := mw.CreateFormFile(m.key, "f.txt")
				_, _ = fw.Write([]byte("alice"))
				continue
			}
			_ = mw.WriteField(m.key, fmt.Sprint(m.val))
		}
		_ = mw.Close()
		body, ctype = &buf, mw.FormDataContentType()
	case strings.Contains(s.ctype, "json"):
		var buf bytes.Buffer
		buf.WriteByte('{')
		for i, m := range s.body {
			if i > 0 {
				buf.WriteByte(',')
			}
			k, _ := json.Marshal(m.key)
			v, _ := json.Marshal(m.val)
			buf.Write(k)
			buf.WriteByte(':')
			buf.Write(v)
		}
		buf.WriteByte('}')
		body = &buf
	default:
		f := url.Values{}
		for _, m := range s.body {
			f.Add(m.key, fmt.Sprint(m.val))
		}
		body = strings.NewReader(f.Encode())
	}
	r := httptest.NewRequest(http.MethodPost, target, body)
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	r.RemoteAddr = "192.0.2.1:1234"
	return r
}

// seen is what the handler read, every way a handler might.
type seen struct {
	called          bool
	info            LoginInfo
	infoOK          bool
	formValue       string
	postFormValue   string
	jsonStruct      string
	jsonMap         string
	jsonMapNonEmpty bool
}

// checkShape runs one request shape through a fresh Defender and checks
// that the identity counted is exactly the identity the handler receives,
// and that no way of re-reading the request gives the handler another
// username.
func checkShape(t testing.TB, s shape) (called bool) {
	st, err := memory.New(&memory.Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := New(st, DefaultConfig(), &Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m, err := NewMiddleware(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got seen
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.called = true
		got.info, got.infoOK = LoginFrom(r)
		got.formValue = r.FormValue("username")
		got.postFormValue = r.PostFormValue("username")
		if strings.Contains(r.Header.Get("Content-Type"), "json") {
			b, _ := io.ReadAll(r.Body)
			var v struct {
				Username string `json:"username"`
			}
			if json.Unmarshal(b, &v) == nil {
				got.jsonStruct = v.Username
			}
			var mv map[string]any
			if json.Unmarshal(b, &mv) == nil {
				got.jsonMap, _ = mv["username"].(string)
			}
		}
		w.WriteHeader(http.StatusUnauthorized) // a failure: it stays counted
	}))
	r := s.request(t)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)

	counters := scanCounters(t, st)
	ipKey := (&identity{kind: KindIP, ip: "192.0.2.1"}).key("defender", slotCounter)
	if counters[ipKey] != 1 {
		t.Fatalf("%+v: IP counter %d, want 1 (every attempt or refusal counts once); counters %v", s, counters[ipKey], counters)
	}
	delete(counters, ipKey)
	if !got.called {
		if w.Code != http.StatusBadRequest || w.Header().Get(ReasonHeader) != "refused" {
			t.Fatalf("%+v: handler not called, answer %d %q", s, w.Code, w.Header().Get(ReasonHeader))
		}
		if len(counters) != 0 {
			t.Fatalf("%+v: refused, yet counted %v", s, counters)
		}
		return false
	}
	if !got.infoOK {
		t.Fatalf("%+v: LoginFrom found nothing", s)
	}
	want := map[string]int64{}
	if got.info.Canonical != "" {
		want[(&identity{kind: KindUsername, username: got.info.Canonical}).key("defender", slotCounter)] = 1
	}
	if fmt.Sprint(counters) != fmt.Sprint(want) {
		t.Fatalf("%+v: handler got %+v, counted %v", s, got.info, counters)
	}
	if got.info.Canonical != CanonicalUsername(got.info.Username) {
		t.Fatalf("%+v: LoginInfo %+v is not canonical", s, got.info)
	}
	for how, v := range map[string]string{"r.FormValue": got.formValue, "r.PostFormValue": got.postFormValue,
		"json struct": got.jsonStruct, "json map": got.jsonMap} {
		if v != "" && TrimUsername(v) != got.info.Username {
			t.Fatalf("%+v: counted %q, but %s gives the handler %q", s, got.info.Username, how, v)
		}
	}
	return true
}

func scanCounters(t testing.TB, st *memory.Store) map[string]int64 {
	out := map[string]int64{}
	cursor := ""
	for {
		es, next, err := st.Scan(context.Background(), "defender:f:", cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			var n int64
			fmt.Sscan(string(e.Value), &n)
			out[e.Key] = n
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// TestLoginShapesProperty: over random request shapes (content types,
// query plus body, duplicate and case- or width-variant fields, JSON value
// types, malformed bodies), the identity counted is always the identity the
// handler receives, no re-reading of the request gives the handler another
// username, and a request refused as ambiguous reaches no handler and is
// counted against its IP.
func TestLoginShapesProperty(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	called, refused := 0, 0
	script := make([]byte, 24)
	for i := 0; i < n; i++ {
		for j := range script {
			script[j] = byte(rng.UintN(256))
		}
		if checkShape(t, shapeFrom(script)) {
			called++
		} else {
			refused++
		}
	}
	t.Logf("%d request shapes checked: %d reached the handler, %d refused", n, called, refused)
}

// FuzzLoginShapes is TestLoginShapesProperty driven by the fuzzer.
func FuzzLoginShapes(f *testing.F) {
	for _, seed := range [][]byte{
		{3, 0, 1, 0, 0, 0, 3, 8},        // JSON with a decoy
		{1, 1, 0, 8, 2, 0, 0},           // query + form
		{2, 0, 0, 3, 0, 0, 0, 14, 0, 1}, // multipart with a file
		{3, 0, 0, 2, 0, 0, 4, 11},       // JSON non-string
		{5, 0, 0, 1, 0, 0},              // text body
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		checkShape(t, shapeFrom(script))
	})
}
