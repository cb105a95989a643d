package admin_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/go-defender/defender/admin"
	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
)

// Mount the admin under /admin/defender/ behind HTTP Basic auth, then use
// its JSON API: list the blocks and unblock one.
func ExampleNew() {
	store, _ := memory.New(nil)
	defer store.Close()
	cfg := defender.DefaultConfig()
	cfg.FailureLimit = 1
	d, _ := defender.New(store, cfg, &defender.Options{Logger: slog.New(slog.DiscardHandler)})
	defer d.Close()

	h, err := admin.New(d, admin.Options{
		Authorize: admin.BasicAuth("admin", "correct horse"),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/defender/", http.StripPrefix("/admin/defender", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// Two wrong passwords for "Alice" block the username.
	ctx := context.Background()
	for range 2 {
		d.Attempt(ctx, defender.Login{Username: "Alice"}).Failed(ctx)
	}

	get := func(path string) string {
		req, _ := http.NewRequest("GET", srv.URL+"/admin/defender/"+path, nil)
		req.SetBasicAuth("admin", "correct horse")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	fmt.Println(get("api/blocks"))

	form := url.Values{"username": {"alice"}}
	req, _ := http.NewRequest("POST", srv.URL+"/admin/defender/api/unblock", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("admin", "correct horse")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(b))
	fmt.Println(get("api/blocks"))

	// Without credentials: 401.
	resp, err = http.Get(srv.URL + "/admin/defender/")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// {"blocks":[{"kind":"username","username":"alice","count":2,"permanent":false,"seconds_remaining":300}],"next":""}
	// {"kind":"username","username":"alice","unblocked":true}
	// {"blocks":[],"next":""}
	// 401
}

// An application with its own sessions authorizes with a function of the
// request.
func ExampleOptions_authorize() {
	store, _ := memory.New(nil)
	defer store.Close()
	d, _ := defender.New(store, defender.DefaultConfig(), nil)
	defer d.Close()

	isStaff := func(r *http.Request) bool {
		c, err := r.Cookie("session")
		return err == nil && c.Value == "staff-session" // look the session up in your store
	}
	_, err := admin.New(d, admin.Options{Authorize: isStaff})
	fmt.Println(err)
	_, err = admin.New(d, admin.Options{})
	fmt.Println(err)
	// Output:
	// <nil>
	// admin: Options.Authorize is required
}
