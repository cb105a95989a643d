package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// Message is one plain-text e-mail to one recipient.
type Message struct {
	// To is the recipient: "owner@example.com" or "Name <owner@example.com>".
	To string
	// Subject is the subject line; line breaks are replaced by spaces.
	Subject string
	// Body is the plain-text body (UTF-8; any line ending).
	Body string
}

// Sender delivers a Message. It must honour ctx's deadline and
// cancellation, and be safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, m Message) error

// Send calls f(ctx, m).
func (f SenderFunc) Send(ctx context.Context, m Message) error { return f(ctx, m) }

// Errors of SMTP.Send, matched with errors.Is.
var (
	// ErrAddress: From or To is not a valid address.
	ErrAddress = errors.New("notify: invalid e-mail address")
	// ErrNoTLS: RequireTLS is set and the server does not offer STARTTLS.
	ErrNoTLS = errors.New("notify: SMTP server does not offer STARTTLS")
	// ErrNoAuth: Auth is set and the server does not offer AUTH.
	ErrNoAuth = errors.New("notify: SMTP server does not offer AUTH")
)

// SMTP sends messages through an SMTP server with net/smtp, one connection
// per message. The zero value is not usable: set Addr and From. Its fields
// must not change while it is in use.
type SMTP struct {
	// Addr is the server's host:port (for example "smtp.example.com:587").
	Addr string
	// From is the sender, as the From header shows it; its address is the
	// envelope sender too.
	From string
	// Auth, when set, authenticates after STARTTLS (smtp.PlainAuth refuses
	// to send a password over an unencrypted connection, except to
	// localhost).
	Auth smtp.Auth
	// TLSConfig is used for STARTTLS, which is used whenever the server
	// offers it. Nil: the default configuration with ServerName set to
	// Addr's host.
	TLSConfig *tls.Config
	// RequireTLS refuses to send when the server does not offer STARTTLS.
	RequireTLS bool
	// LocalName is the name given in EHLO; empty: "localhost".
	LocalName string
	// Now is the clock for the Date header; nil: time.Now.
	Now func() time.Time
}

// Send delivers m: connect, EHLO, STARTTLS when offered (required with
// RequireTLS), AUTH when Auth is set, MAIL, RCPT, DATA, QUIT. It gives up
// when ctx is done. Errors wrap the SMTP server's reply, ErrAddress,
// ErrNoTLS or ErrNoAuth.
func (s *SMTP) Send(ctx context.Context, m Message) (err error) {
	from, err := mail.ParseAddress(s.From)
	if err != nil {
		return fmt.Errorf("%w: From %q: %w", ErrAddress, s.From, err)
	}
	to, err := mail.ParseAddress(m.To)
	if err != nil {
		return fmt.Errorf("%w: To %q: %w", ErrAddress, m.To, err)
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("notify: SMTP Addr %q: %w", s.Addr, err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	msg := compose(from, to, m, now(), host)

	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("notify: SMTP dial %s: %w", s.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer func() {
		if err == nil {
			return
		}
		cause := ctx.Err()
		if dl, ok := ctx.Deadline(); ok && cause == nil && !time.Now().Before(dl) {
			cause = context.DeadlineExceeded // the connection's deadline fired first
		}
		if cause != nil {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
	}()

	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("notify: SMTP %s: %w", s.Addr, err)
	}
	defer c.Close()
	local := s.LocalName
	if local == "" {
		local = "localhost"
	}
	if err := c.Hello(local); err != nil {
		return fmt.Errorf("notify: SMTP EHLO: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := s.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{ServerName: host}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("notify: SMTP STARTTLS: %w", err)
		}
	} else if s.RequireTLS {
		return fmt.Errorf("%w (%s)", ErrNoTLS, s.Addr)
	}
	if s.Auth != nil {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fmt.Errorf("%w (%s)", ErrNoAuth, s.Addr)
		}
		if err := c.Auth(s.Auth); err != nil {
			return fmt.Errorf("notify: SMTP AUTH: %w", err)
		}
	}
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("notify: SMTP MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to.Address); err != nil {
		return fmt.Errorf("notify: SMTP RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("notify: SMTP DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("notify: SMTP DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("notify: SMTP DATA: %w", err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("notify: SMTP QUIT: %w", err)
	}
	return nil
}

// compose renders m as an RFC 5322 message with CRLF line endings: UTF-8
// plain text, quoted-printable, headers safe from injection.
func compose(from, to *mail.Address, m Message, now time.Time, host string) []byte {
	var b bytes.Buffer
	var id [12]byte
	_, _ = rand.Read(id[:])
	header := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteString("\r\n")
	}
	header("From", from.String())
	header("To", to.String())
	header("Subject", mime.QEncoding.Encode("utf-8", oneLine(m.Subject)))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+oneLine(host)+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\r", "\n")
	if !strings.HasSuffix(body, "\n") {
		body += "\n" // SMTP ends the data with a line break anyway
	}
	_, _ = qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}

// oneLine replaces line breaks and other control characters by spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
