// Package notify e-mails account owners when defender blocks their
// username: the "tell the user" half of django-defender's block signals.
//
// A Notifier is a defender.Hook. Subscribe it in one line:
//
//	n, err := notify.New(&notify.SMTP{Addr: "smtp.example.com:587", From: "security@example.com",
//		Auth: smtp.PlainAuth("", user, pass, "smtp.example.com")}, lookup, nil)
//	...
//	d.OnEvent(n.Hook)
//	defer n.Close()
//
// It reacts to defender.EventUsernameBlocked and defender.EventPairBlocked
// only. The application's Lookup maps the blocked (canonical) username to
// the owner's address; a username without an account is never mailed, so
// an attacker who blocks random names cannot make the site send mail to
// anyone. Messages are rendered from text/template sources (Options.Subject
// and Options.Body) that receive a Data value; they never hold a password
// (the notifier never sees one).
//
// Delivery never slows or breaks a login: Hook only queues (a bounded
// queue; a full queue drops and counts), a fixed number of workers send,
// each message (lookup included) has a deadline, and one owner gets at most
// one message per Options.MinInterval however many blocks an attacker
// causes. Stats counts what happened.
//
// SMTP is the net/smtp Sender: opportunistic or required STARTTLS,
// optional AUTH, context deadlines. Any other transport (an HTTP mail API,
// a queue) is a Sender or a SenderFunc.
package notify
