package notify_test

import (
	"context"
	"fmt"
	"net/smtp"
	"time"

	"github.com/go-defender/defender/defender"
	"github.com/go-defender/defender/notify"
)

// The notifier as a defender hook: here the Sender prints instead of
// mailing, and the event is fed by hand (a Defender feeds it through
// OnEvent when a username is blocked).
func ExampleNew() {
	accounts := map[string]string{"alice": "alice@example.com"}
	lookup := func(ctx context.Context, username string) (string, bool) {
		addr, ok := accounts[username]
		return addr, ok
	}
	printer := notify.SenderFunc(func(ctx context.Context, m notify.Message) error {
		fmt.Printf("To: %s\nSubject: %s\n", m.To, m.Subject)
		return nil
	})
	n, err := notify.New(printer, lookup, &notify.Options{Site: "Example Shop"})
	if err != nil {
		panic(err)
	}
	// d.OnEvent(n.Hook)
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "alice", Duration: 5 * time.Minute, Count: 4})
	n.Hook(defender.Event{Kind: defender.EventUsernameBlocked, Username: "nobody", Duration: 5 * time.Minute, Count: 4})
	_ = n.Close()
	fmt.Printf("%+v\n", n.Stats())
	// Output:
	// To: alice@example.com
	// Subject: Sign-in to Example Shop blocked after failed attempts
	// {Sent:1 Failed:0 Unknown:1 Suppressed:0 Dropped:0}
}

// Sending through an SMTP server with STARTTLS and PLAIN authentication.
func ExampleSMTP() {
	sender := &notify.SMTP{
		Addr:       "smtp.example.com:587",
		From:       "Example Security <security@example.com>",
		Auth:       smtp.PlainAuth("", "security@example.com", "app-password", "smtp.example.com"),
		RequireTLS: true,
	}
	lookup := func(ctx context.Context, username string) (string, bool) { return "", false }
	n, err := notify.New(sender, lookup, nil)
	if err != nil {
		panic(err)
	}
	defer n.Close()
	// d.OnEvent(n.Hook)
}
