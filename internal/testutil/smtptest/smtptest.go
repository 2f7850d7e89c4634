// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) in
// the test process and collects the messages it receives.
package smtptest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jordan-wright/email"
)

// Message is a received e-mail, parsed.
type Message struct {
	From string
	To   []string
	// Email is the parsed MIME message (Subject, Text, HTML, Headers).
	Email *email.Email
	Raw   []byte
	// Received is when the server accepted the message.
	Received time.Time
}

// Server is an SMTP server on 127.0.0.1.
type Server struct {
	Host string
	Port int

	srv      *smtp.Server
	mu       sync.Mutex
	msgs     []Message
	got      chan struct{}
	delay    atomic.Int64 // time.Duration before a message is accepted
	inFlight atomic.Int64 // messages whose data is being received or held
}

// Start starts a server on a free port; it stops when the test ends.
func Start(t testing.TB) *Server {
	return StartOn(t, 0)
}

// StartOn starts a server on the given port (0 for any free one).
func StartOn(t testing.TB, port int) *Server {
	t.Helper()
	s, err := Listen(port)
	if err != nil {
		t.Fatalf("smtptest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Listen starts a server on 127.0.0.1 and the given port (0 for any free
// one) outside a test (the fault suite, cmd/authfaults); Close stops it.
func Listen(port int) (*Server, error) {
	s := &Server{got: make(chan struct{}, 1024)}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.Host = "127.0.0.1"
	s.Port = l.Addr().(*net.TCPAddr).Port
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the server: its listener and every open session are closed,
// so a sender sees its connection refused or cut.
func (s *Server) Close() error { return s.srv.Close() }

// InFlight is how many messages the server is receiving or holding
// (SetDelay) now, not yet accepted.
func (s *Server) InFlight() int { return int(s.inFlight.Load()) }

// SetDelay makes every later message wait d after its data arrived before
// it is accepted (a slow relay; 0 by default).
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Messages returns the messages received so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitFor waits up to timeout until a message to rcpt has arrived and
// returns the newest such message.
func (s *Server) WaitFor(t testing.TB, rcpt string, timeout time.Duration) Message {
	t.Helper()
	return s.WaitForCount(t, rcpt, 1, timeout)
}

// To returns the messages to rcpt received so far, oldest first.
func (s *Server) To(rcpt string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		for _, to := range m.To {
			if to == rcpt {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// WaitForCount waits up to timeout until n messages to rcpt have arrived
// and returns the newest.
func (s *Server) WaitForCount(t testing.TB, rcpt string, n int, timeout time.Duration) Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if msgs := s.To(rcpt); len(msgs) >= n {
			return msgs[len(msgs)-1]
		}
		select {
		case <-s.got:
		case <-time.After(50 * time.Millisecond): // another waiter took the signal
		case <-deadline:
			t.Fatalf("smtptest: %d messages to %s within %v, want %d", len(s.To(rcpt)), rcpt, timeout, n)
		}
	}
}

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s    *Server
	from string
	to   []string
}

func (x *session) AuthMechanisms() []string { return nil }
func (x *session) Reset()                   { x.from, x.to = "", nil }
func (x *session) Logout() error            { return nil }
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}

// Rcpt accepts any recipient except those whose address starts with
// "reject", which get a permanent 550 reply echoing the address (as real
// relays do), and "tempfail", which get a transient 451.
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "reject"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: Recipient address rejected"}
	case strings.HasPrefix(to, "tempfail"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "<" + to + ">: try again later"}
	}
	x.to = append(x.to, to)
	return nil
}
func (x *session) Data(r io.Reader) error {
	x.s.inFlight.Add(1)
	defer x.s.inFlight.Add(-1)
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	e, err := email.NewEmailFromReader(bytes.NewReader(raw))
	if err != nil {
		return errors.New("unparsable message: " + err.Error())
	}
	if d := time.Duration(x.s.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, Message{From: x.from, To: x.to, Email: e, Raw: raw, Received: time.Now()})
	x.s.mu.Unlock()
	select {
	case x.s.got <- struct{}{}:
	default:
	}
	return nil
}
