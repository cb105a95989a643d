package notify_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/notify"
)

var epoch = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// parse reads a received message: its header, and its decoded body.
func parse(t *testing.T, data string) (mail.Header, string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatalf("%v in %q", err, data)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header, strings.ReplaceAll(string(b), "\r\n", "\n")
}

func TestSMTPSend(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t)
	msg := notify.Message{To: "Ålice <alice@example.com>", Subject: "Blocked ✓\r\nBcc: evil@example.com", Body: "line one\nline two é\r\n.\n"}
	tests := []struct {
		name   string
		server smtpConfig
		client notify.SMTP
		msg    *notify.Message
		is     error  // expected error
		errHas string // expected error text
		tls    bool
		auth   string
	}{
		{name: "plain"},
		{name: "STARTTLS when offered", server: smtpConfig{startTLS: serverTLS}, client: notify.SMTP{TLSConfig: clientTLS}, tls: true},
		{name: "STARTTLS required and offered", server: smtpConfig{startTLS: serverTLS, auth: true},
			client: notify.SMTP{TLSConfig: clientTLS, RequireTLS: true, Auth: smtp.PlainAuth("", "u", "p", "127.0.0.1")}, tls: true,
			auth: "\x00u\x00p"},
		{name: "STARTTLS required, not offered", client: notify.SMTP{RequireTLS: true}, is: notify.ErrNoTLS},
		{name: "STARTTLS untrusted certificate", server: smtpConfig{startTLS: serverTLS}, errHas: "STARTTLS"},
		{name: "AUTH", server: smtpConfig{auth: true}, client: notify.SMTP{Auth: smtp.PlainAuth("", "user", "secret", "127.0.0.1")},
			auth: "\x00user\x00secret"},
		{name: "AUTH not offered", client: notify.SMTP{Auth: smtp.PlainAuth("", "user", "secret", "127.0.0.1")}, is: notify.ErrNoAuth},
		{name: "AUTH refused", server: smtpConfig{auth: true, refuse: map[string]string{"AUTH": "535 bad credentials"}},
			client: notify.SMTP{Auth: smtp.PlainAuth("", "user", "secret", "127.0.0.1")}, errHas: "535"},
		{name: "greeting refused", server: smtpConfig{greeting: "554 go away"}, errHas: "554"},
		{name: "EHLO and HELO refused", server: smtpConfig{refuse: map[string]string{"EHLO": "502 no", "HELO": "502 no"}}, errHas: "EHLO"},
		{name: "MAIL refused", server: smtpConfig{refuse: map[string]string{"MAIL": "550 sender refused"}}, errHas: "MAIL FROM: 550"},
		{name: "RCPT refused", server: smtpConfig{refuse: map[string]string{"RCPT": "550 no such user"}}, errHas: "RCPT TO: 550"},
		{name: "DATA refused", server: smtpConfig{refuse: map[string]string{"DATA": "554 no data"}}, errHas: "DATA: 554"},
		{name: "message refused", server: smtpConfig{refuse: map[string]string{"DATA-END": "552 too big"}}, errHas: "DATA: 552"},
		{name: "QUIT refused", server: smtpConfig{refuse: map[string]string{"QUIT": "500 no"}}, errHas: "QUIT"},
		{name: "bad To", msg: &notify.Message{To: "not an address"}, is: notify.ErrAddress},
		{name: "bad From", client: notify.SMTP{From: "nobody"}, is: notify.ErrAddress},
		{name: "bad Addr", client: notify.SMTP{Addr: "no-port"}, errHas: "Addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newSMTPServer(t, tt.server)
			c := tt.client
			if c.Addr == "" {
				c.Addr = srv.Addr()
			}
			if c.From == "" {
				c.From = "Security <security@example.com>"
			}
			c.Now = func() time.Time { return epoch }
			c.LocalName = "client.example"
			m := msg
			if tt.msg != nil {
				m = *tt.msg
			}
			err := c.Send(context.Background(), m)
			if tt.is != nil || tt.errHas != "" {
				if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err %v, want %v containing %q", err, tt.is, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := srv.received()
			if len(got) != 1 {
				t.Fatalf("received %d messages", len(got))
			}
			r := got[0]
			if r.From != "security@example.com" || r.To != "alice@example.com" || r.TLS != tt.tls || r.Auth != tt.auth {
				t.Fatalf("envelope %+v", r)
			}
			h, body := parse(t, r.Data)
			subj, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
			if err != nil || subj != "Blocked ✓  Bcc: evil@example.com" || h.Get("Bcc") != "" {
				t.Fatalf("Subject %q (%v), Bcc %q", subj, err, h.Get("Bcc"))
			}
			to, err := h.AddressList("To")
			if err != nil || len(to) != 1 || to[0].Name != "Ålice" || to[0].Address != "alice@example.com" {
				t.Fatalf("To %v %v", to, err)
			}
			if d, _ := h.Date(); !d.Equal(epoch) {
				t.Fatalf("Date %v", d)
			}
			if body != "line one\nline two é\n.\n" {
				t.Fatalf("body %q", body)
			}
			for k, v := range map[string]string{"Content-Type": "text/plain; charset=utf-8", "MIME-Version": "1.0", "Auto-Submitted": "auto-generated"} {
				if h.Get(k) != v {
					t.Fatalf("%s %q", k, h.Get(k))
				}
			}
			if !strings.HasSuffix(h.Get("Message-Id"), "@127.0.0.1>") {
				t.Fatalf("Message-ID %q", h.Get("Message-Id"))
			}
		})
	}
	t.Run("dial refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := notify.SMTP{Addr: addr, From: "a@example.com"}
		if err := c.Send(context.Background(), notify.Message{To: "b@example.com"}); err == nil || !strings.Contains(err.Error(), "dial") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		srv := newSMTPServer(t, smtpConfig{silent: true})
		c := notify.SMTP{Addr: srv.Addr(), From: "a@example.com"}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := c.Send(ctx, notify.Message{To: "b@example.com"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		srv := newSMTPServer(t, smtpConfig{})
		c := notify.SMTP{Addr: srv.Addr(), From: "a@example.com"}
		if err := c.Send(context.Background(), notify.Message{To: "b@example.com", Subject: "hi", Body: "x"}); err != nil {
			t.Fatal(err)
		}
		h, _ := parse(t, srv.received()[0].Data)
		if d, err := h.Date(); err != nil || time.Since(d) > time.Minute {
			t.Fatalf("Date %v %v", d, err)
		}
	})
}

// capture is a Sender that keeps messages and can be held.
type capture struct {
	mu   sync.Mutex
	msgs []notify.Message
	hold chan struct{} // when set, Send waits for it (or ctx)
	got  chan notify.Message
	err  error
}

func (c *capture) Send(ctx context.Context, m notify.Message) error {
	if c.hold != nil {
		select {
		case <-c.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	if c.got != nil {
		c.got <- m
	}
	return c.err
}

func (c *capture) all() []notify.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]notify.Message(nil), c.msgs...)
}

var owners = map[string]string{"alice": "alice@example.com", "bob": "Bob <bob@example.com>"}

func lookup(ctx context.Context, u string) (string, bool) {
	if u == "panic" {
		panic("lookup panicked")
	}
	a, ok := owners[u]
	return a, ok
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestNotifier(t *testing.T) {
	clk := &fakeClock{t: epoch}
	snd := &capture{}
	n, err := notify.New(snd, lookup, &notify.Options{Site: "Example", Now: clk.Now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(kind defender.EventKind, user string) defender.Event {
		return defender.Event{Kind: kind, Time: clk.Now(), Username: user, IP: "192.0.2.1", Duration: 5 * time.Minute, Count: 4}
	}
	n.Hook(ev(defender.EventIPBlocked, ""))
	n.Hook(ev(defender.EventUnblocked, "alice"))
	n.Hook(ev(defender.EventStoreFailed, ""))
	n.Hook(ev(defender.EventUsernameBlocked, ""))
	n.Hook(ev(defender.EventUsernameBlocked, "alice"))
	n.Hook(ev(defender.EventUsernameBlocked, "alice")) // within MinInterval
	n.Hook(ev(defender.EventPairBlocked, "bob"))
	n.Hook(ev(defender.EventUsernameBlocked, "mallory")) // unknown: not mailed
	n.Hook(ev(defender.EventUsernameBlocked, "panic"))
	clk.Advance(notify.DefaultMinInterval)
	perm := ev(defender.EventUsernameBlocked, "alice")
	perm.Permanent, perm.Duration = true, 0
	n.Hook(perm)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n.Hook(ev(defender.EventUsernameBlocked, "bob")) // after Close
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := notify.Stats{Sent: 3, Failed: 1, Unknown: 1, Suppressed: 1, Dropped: 1}
	if got := n.Stats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	byTo := map[string]notify.Message{}
	for _, m := range snd.all() {
		if m.Body == "" {
			t.Fatalf("empty body %+v", m)
		}
		byTo[m.To+fmt.Sprint(strings.Contains(m.Body, "administrator unblocks"))] = m
	}
	a := byTo["alice@example.comfalse"]
	if a.Subject != "Sign-in to Example blocked after failed attempts" ||
		!strings.Contains(a.Body, `There were 4 failed attempts to sign in to Example as "alice".`) ||
		!strings.Contains(a.Body, "blocked for 5 minutes (until 2026-03-04 05:11 UTC)") ||
		!strings.Contains(a.Body, "never contains your password") {
		t.Fatalf("alice: %+v", a)
	}
	if b := byTo["Bob <bob@example.com>false"]; !strings.Contains(b.Body, `as "bob" from 192.0.2.1.`) {
		t.Fatalf("bob: %+v", b)
	}
	if p := byTo["alice@example.comtrue"]; !strings.Contains(p.Body, "contact an administrator") {
		t.Fatalf("permanent: %+v", p)
	}
}

func TestNotifierQueueAndShutdown(t *testing.T) {
	snd := &capture{hold: make(chan struct{}), got: make(chan notify.Message, 10)}
	var logs bytes.Buffer
	n, err := notify.New(snd, lookup, &notify.Options{Workers: 1, Queue: 1, MinInterval: -1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	blocked := defender.Event{Kind: defender.EventUsernameBlocked, Username: "alice", Duration: time.Minute}
	n.Hook(blocked) // taken by the worker, held in Send
	snd.hold <- struct{}{}
	<-snd.got
	// At most one in Send (held) and one queued: the rest are dropped.
	n.Hook(blocked)
	n.Hook(blocked)
	n.Hook(blocked)
	if got := n.Stats().Dropped; got < 1 {
		t.Fatalf("dropped %d", got)
	}
	if !strings.Contains(logs.String(), "queue full") {
		t.Fatalf("logs %s", logs.String())
	}
	// Shutdown with a deadline: the held sends are cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	st := n.Stats()
	if st.Sent != 1 || st.Failed < 1 || st.Sent+st.Failed+st.Dropped != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNotifierSendError(t *testing.T) {
	snd := &capture{err: errors.New("smtp down")}
	var logs bytes.Buffer
	n, err := notify.New(snd, lookup, &notify.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "alice", Duration: time.Minute})
	n.Close()
	if st := n.Stats(); st.Failed != 1 || st.Sent != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "smtp down") {
		t.Fatalf("logs %s", logs.String())
	}
}

func TestNotifierTemplates(t *testing.T) {
	snd := &capture{}
	n, err := notify.New(snd, lookup, &notify.Options{
		Subject: "{{.Username}} locked",
		Body:    "{{.Count}} {{.DurationText}} {{.Time.Unix}} {{.Until.Unix}} {{.Permanent}} [{{.IP}}] {{.Site}}",
		Now:     func() time.Time { return epoch },
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "alice", IP: "192.0.2.1", Duration: 90 * time.Minute, Count: 7})
	n.Close()
	m := snd.all()
	if len(m) != 1 || m[0].Subject != "alice locked" ||
		m[0].Body != fmt.Sprintf("7 1 hour 30 minutes %d %d false [] your account", epoch.Unix(), epoch.Add(90*time.Minute).Unix()) {
		t.Fatalf("%+v", m)
	}
	// A template that fails at execution counts as a failure.
	n, err = notify.New(snd, lookup, &notify.Options{Body: "{{.Nope}}", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "alice"})
	n.Close()
	if st := n.Stats(); st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
	n, err = notify.New(snd, lookup, &notify.Options{Subject: "{{.Nope}}", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "alice"})
	n.Close()
	if st := n.Stats(); st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDurationText(t *testing.T) {
	tests := map[time.Duration]string{
		0:                                 "0 seconds",
		time.Second:                       "1 second",
		45 * time.Second:                  "45 seconds",
		59*time.Second + time.Millisecond: "60 seconds",
		time.Minute:                       "1 minute",
		5 * time.Minute:                   "5 minutes",
		time.Hour:                         "1 hour",
		2*time.Hour + 59*time.Minute + 30*time.Second: "3 hours",
		90 * time.Minute: "1 hour 30 minutes",
		24 * time.Hour:   "1 day",
		49 * time.Hour:   "3 days",
	}
	for d, want := range tests {
		snd := &capture{}
		n, err := notify.New(snd, lookup, &notify.Options{Body: "{{.DurationText}}"})
		if err != nil {
			t.Fatal(err)
		}
		n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "alice", Duration: d})
		n.Close()
		if got := snd.all()[0].Body; got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

// TestNotifierRateMemoryBounded: the per-username memory never grows past
// its bound; past it, old entries go first, then all.
func TestNotifierRateMemoryBounded(t *testing.T) {
	clk := &fakeClock{t: epoch}
	n, err := notify.New(notify.SenderFunc(func(context.Context, notify.Message) error { return nil }),
		func(context.Context, string) (string, bool) { return "", false },
		&notify.Options{Queue: 30000, Now: clk.Now, MinInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10000; i++ {
		n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: fmt.Sprint("u", i)})
	}
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "u0"}) // remembered: suppressed
	clk.Advance(time.Minute)
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "new1"}) // prunes the expired ones
	for i := 0; i < 10000; i++ {
		n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: fmt.Sprint("v", i)}) // fills again, then clears
	}
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "v1"}) // forgotten by the clear: not suppressed
	n.Close()
	st := n.Stats()
	if st.Suppressed != 1 || st.Unknown != 20002 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNewErrors(t *testing.T) {
	snd := &capture{}
	for name, c := range map[string]struct {
		s notify.Sender
		l notify.Lookup
		o *notify.Options
	}{
		"nil sender":     {nil, lookup, nil},
		"nil lookup":     {snd, nil, nil},
		"negative":       {snd, lookup, &notify.Options{Workers: -1}},
		"subject syntax": {snd, lookup, &notify.Options{Subject: "{{"}},
		"body syntax":    {snd, lookup, &notify.Options{Body: "{{.X"}},
	} {
		if n, err := notify.New(c.s, c.l, c.o); n != nil || !errors.Is(err, notify.ErrOptions) {
			t.Errorf("%s: %v %v", name, n, err)
		}
	}
}
