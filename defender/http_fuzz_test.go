package defender

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzJSONField: the middleware reads the username of a JSON body exactly
// as a handler decoding it with encoding/json into a struct does, so no
// spelling of the member lets a login escape the username counter.
func FuzzJSONField(f *testing.F) {
	for _, s := range []string{
		`{"username":"alice","password":"x"}`, `{"UserName":"alice"}`, `{"username":"a","USERNAME":"b"}`,
		`{"username":null}`, `{"username":42}`, `{"a":{"username":"x"}}`, `["alice"]`, `{"username":"\u0061\ud83d\ude00"}`,
		`{"ſsername":"k"}`, `{"username":"x"} trailing`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := jsonField(body, "username")
		var v struct {
			Username string `json:"username"`
		}
		if json.Unmarshal(body, &v) != nil {
			return // the handler rejects the body: nothing to agree on
		}
		if got != v.Username {
			t.Fatalf("jsonField(%q) = %q, encoding/json says %q", body, got, v.Username)
		}
	})
}

// FuzzAcceptQ: any Accept header is parsed within its bounds, with
// qualities in [0, 1].
func FuzzAcceptQ(f *testing.F) {
	for _, s := range []string{"application/json", "text/html;q=0.9, application/json;q=0.95", "*/*;q=", ";;;,,,", strings.Repeat("a/b;q=1,", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		j, h := acceptQ([]string{accept, accept})
		if j < 0 || j > 1 || h < 0 || h > 1 {
			t.Fatalf("acceptQ(%q) = %v, %v", accept, j, h)
		}
	})
}
