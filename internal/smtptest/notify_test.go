package smtptest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/smtp"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-defender/defender/backend/memory"
	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/internal/smtptest"
	"github.com/go-defender/defender/notify"
)

func decode(t *testing.T, data []byte) (mail.Header, string, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%v in %q", err, data)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header, subj, strings.ReplaceAll(string(b), "\r\n", "\n")
}

// TestSMTPSender: STARTTLS, AUTH PLAIN and the message format against a
// real SMTP server implementation.
func TestSMTPSender(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{User: "mailer", Password: "s3cret"})
	s := &notify.SMTP{
		Addr:       srv.Addr,
		From:       "Security <security@example.com>",
		Auth:       smtp.PlainAuth("", "mailer", "s3cret", "127.0.0.1"),
		TLSConfig:  srv.ClientTLS,
		RequireTLS: true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Send(ctx, notify.Message{To: "Zoë <zoe@example.com>", Subject: "Connexion bloquée\r\nBcc: x@example.com", Body: "Ligne 1\nLigne 2 — fin\n.\nend"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if !m.TLS || m.User != "mailer" || m.From != "security@example.com" || len(m.To) != 1 || m.To[0] != "zoe@example.com" {
		t.Fatalf("envelope %+v", m)
	}
	h, subj, body := decode(t, m.Data)
	if subj != "Connexion bloquée  Bcc: x@example.com" || h.Get("Bcc") != "" {
		t.Fatalf("subject %q bcc %q", subj, h.Get("Bcc"))
	}
	if body != "Ligne 1\nLigne 2 — fin\n.\nend\n" {
		t.Fatalf("body %q", body)
	}

	// Wrong credentials: the server's 535 comes back.
	bad := *s
	bad.Auth = smtp.PlainAuth("", "mailer", "wrong", "127.0.0.1")
	if err := bad.Send(ctx, notify.Message{To: "zoe@example.com"}); err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("err %v", err)
	}
	// No AUTH: the server requires it.
	anon := *s
	anon.Auth = nil
	if err := anon.Send(ctx, notify.Message{To: "zoe@example.com"}); err == nil || !strings.Contains(err.Error(), "MAIL FROM") {
		t.Fatalf("err %v", err)
	}
	// A server without STARTTLS while TLS is required: nothing is sent.
	plain := smtptest.Start(t, smtptest.Options{NoTLS: true})
	req := &notify.SMTP{Addr: plain.Addr, From: "security@example.com", RequireTLS: true}
	if err := req.Send(ctx, notify.Message{To: "zoe@example.com"}); !errors.Is(err, notify.ErrNoTLS) {
		t.Fatalf("err %v", err)
	}
	if len(plain.Messages()) != 0 {
		t.Fatal("sent without TLS")
	}
}

// TestBlockNotificationEndToEnd: failed logins through the HTTP middleware
// block alice; the notifier, subscribed with OnEvent, mails her owner
// through the SMTP server. Unknown usernames and IP blocks send nothing,
// and no message holds a password.
func TestBlockNotificationEndToEnd(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	st, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := defender.New(st, defender.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{"alice": "Alice <alice@example.com>"}
	n, err := notify.New(&notify.SMTP{Addr: srv.Addr, From: "security@example.com", TLSConfig: srv.ClientTLS},
		func(ctx context.Context, u string) (string, bool) { a, ok := owners[u]; return a, ok },
		&notify.Options{Site: "Example"})
	if err != nil {
		t.Fatal(err)
	}
	d.OnEvent(n.Hook)
	m, err := defender.NewMiddleware(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("wrong password")) // every login fails
	}))
	post := func(user, peer string) int {
		form := url.Values{"username": {user}, "password": {"hunter2-" + user}}
		r := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = peer + ":1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for i, peer := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"} {
		want := 200
		if i == 3 {
			want = 429
		}
		if c := post("ALICE", peer); c != want {
			t.Fatalf("attempt %d: %d", i, c)
		}
	}
	for range 4 {
		post("mallory", "198.51.100.9") // blocks mallory (unknown) and the IP
	}
	if err := d.Close(); err != nil { // delivers the pending events
		t.Fatal(err)
	}
	if err := n.Close(); err != nil { // delivers the queued messages
		t.Fatal(err)
	}
	if st := n.Stats(); st.Sent != 1 || st.Unknown != 1 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].To[0] != "alice@example.com" || !msgs[0].TLS {
		t.Fatalf("messages %+v", msgs)
	}
	_, subj, body := decode(t, msgs[0].Data)
	if subj != "Sign-in to Example blocked after failed attempts" ||
		!strings.Contains(body, `There were 4 failed attempts to sign in to Example as "alice".`) ||
		!strings.Contains(body, "blocked for 5 minutes") {
		t.Fatalf("%q\n%s", subj, body)
	}
	if strings.Contains(string(msgs[0].Data), "hunter2") {
		t.Fatal("a password reached the e-mail")
	}
}
