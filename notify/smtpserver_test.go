package notify_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpServer is a small SMTP server on a loopback port, speaking enough of
// RFC 5321 (EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
// to exercise the client's every branch, with per-command refusals. The
// full-featured server test (github.com/emersion/go-smtp) lives in the
// nested module internal/smtptest, so that library users never inherit
// go-smtp.
type smtpServer struct {
	smtpConfig
	t  *testing.T
	ln net.Listener

	mu   sync.Mutex
	msgs []received
	wg   sync.WaitGroup
}

// smtpConfig is what a test chooses about the server.
type smtpConfig struct {
	startTLS *tls.Config // offered when set
	auth     bool        // AUTH PLAIN offered
	refuse   map[string]string
	silent   bool   // accept, never greet
	greeting string // replaces "220 test ESMTP"
}

type received struct {
	From, To, Auth string
	TLS            bool
	Data           string
}

func newSMTPServer(t *testing.T, cfg smtpConfig) *smtpServer {
	t.Helper()
	s := &smtpServer{smtpConfig: cfg}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.t, s.ln = t, ln
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *smtpServer) Addr() string { return s.ln.Addr().String() }

func (s *smtpServer) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

func (s *smtpServer) serve() {
	defer s.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			s.session(c)
		}()
	}
}

func (s *smtpServer) session(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if s.silent {
		_, _ = bufio.NewReader(c).ReadString('\n') // until the client gives up
		return
	}
	tp := textproto.NewConn(c)
	var cur received
	reply := func(format string, args ...any) bool { return tp.PrintfLine(format, args...) == nil }
	greet := "220 test ESMTP"
	if s.greeting != "" {
		greet = s.greeting
	}
	if !reply("%s", greet) || !strings.HasPrefix(greet, "220") {
		return
	}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if r, ok := s.refuse[verb]; ok {
			reply("%s", r)
			if strings.HasPrefix(r, "421") {
				return
			}
			continue
		}
		switch verb {
		case "EHLO", "HELO":
			exts := []string{"250-test", "250-8BITMIME"}
			if s.startTLS != nil && !cur.TLS {
				exts = append(exts, "250-STARTTLS")
			}
			if s.auth {
				exts = append(exts, "250-AUTH PLAIN")
			}
			exts = append(exts, "250 SIZE 1000000")
			for _, e := range exts {
				reply("%s", e)
			}
		case "STARTTLS":
			reply("220 go ahead")
			tc := tls.Server(c, s.startTLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
			tp = textproto.NewConn(tc)
			cur = received{TLS: true}
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			b, err := base64.StdEncoding.DecodeString(resp)
			if mech != "PLAIN" || err != nil {
				reply("504 unsupported")
				continue
			}
			cur.Auth = string(b)
			reply("235 ok")
		case "MAIL":
			cur.From = strings.TrimSuffix(strings.TrimPrefix(arg, "FROM:<"), ">")
			if i := strings.Index(cur.From, ">"); i >= 0 {
				cur.From = cur.From[:i]
			}
			reply("250 ok")
		case "RCPT":
			cur.To = strings.TrimSuffix(strings.TrimPrefix(arg, "TO:<"), ">")
			reply("250 ok")
		case "DATA":
			reply("354 end with .")
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			cur.Data = string(b)
			if r, ok := s.refuse["DATA-END"]; ok {
				reply("%s", r)
				continue
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, cur)
			s.mu.Unlock()
			cur = received{TLS: cur.TLS, Auth: cur.Auth}
			reply("250 queued")
		case "RSET", "NOOP":
			reply("250 ok")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 unknown command")
		}
	}
}

// selfSigned returns a server TLS config for 127.0.0.1 and a client config
// that trusts it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}
