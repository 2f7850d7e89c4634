package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jordan-wright/email"
)

// TLS modes of SMTPConfig.TLS.
const (
	TLSNone     = "none"     // plain; STARTTLS when the server offers it
	TLSStartTLS = "starttls" // STARTTLS required
	TLSImplicit = "tls"      // TLS from the first byte (SMTPS, port 465)
)

// SMTPConfig names an SMTP relay.
type SMTPConfig struct {
	Host     string
	Port     int
	Username string
	Password string
	From     string
	TLS      string
	// Timeout bounds one delivery.
	Timeout time.Duration
}

// SMTPSender delivers mail through an SMTP relay with
// github.com/jordan-wright/email.
type SMTPSender struct {
	c    SMTPConfig
	addr string
	auth smtp.Auth
}

// NewSMTPSender returns a sender for c.
func NewSMTPSender(c SMTPConfig) *SMTPSender {
	s := &SMTPSender{c: c, addr: net.JoinHostPort(c.Host, strconv.Itoa(c.Port))}
	if c.Username != "" {
		s.auth = smtp.PlainAuth("", c.Username, c.Password, c.Host)
	}
	if s.c.Timeout <= 0 {
		s.c.Timeout = 15 * time.Second
	}
	return s
}

// Envelope says who a message goes to.
type Envelope struct {
	// To is the recipient's address.
	To string
	// UserID is the recipient's account (nil if none), for logs.
	UserID *uuid.UUID
}

// Sender delivers one rendered message.
type Sender interface {
	Send(ctx context.Context, env Envelope, r Rendered) error
}

// LogSender writes messages to the log instead of sending them: for
// development mode without an SMTP relay. The log line holds the text body
// (with any code in it) and the user id, never the address.
type LogSender struct{ Log *slog.Logger }

// Send implements Sender.
func (l LogSender) Send(ctx context.Context, env Envelope, r Rendered) error {
	var uid string
	if env.UserID != nil {
		uid = env.UserID.String()
	}
	l.Log.WarnContext(ctx, "development mode: e-mail written to the log, not sent",
		"user_id", uid, "subject", r.Subject, "text", r.Text)
	return nil
}

// ErrTimeout reports a delivery that did not finish within the timeout.
var ErrTimeout = errors.New("smtp: delivery timed out")

// Send delivers one message. The library has no timeouts of its own, so
// the delivery runs in a goroutine and Send gives up after c.Timeout; a
// relay that hangs keeps that goroutine until the connection dies.
func (s *SMTPSender) Send(ctx context.Context, env Envelope, r Rendered) error {
	to := env.To
	e := email.NewEmail()
	e.From = s.c.From
	e.To = []string{to}
	e.Subject = r.Subject
	e.Text = []byte(r.Text)
	e.HTML = []byte(r.HTML)
	tlsConfig := &tls.Config{ServerName: s.c.Host, MinVersion: tls.VersionTLS12}
	done := make(chan error, 1)
	go func() {
		switch s.c.TLS {
		case TLSImplicit:
			done <- e.SendWithTLS(s.addr, s.auth, tlsConfig)
		case TLSStartTLS:
			done <- e.SendWithStartTLS(s.addr, s.auth, tlsConfig)
		default:
			done <- e.Send(s.addr, s.auth)
		}
	}()
	t := time.NewTimer(s.c.Timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("smtp %s: %w", s.addr, err)
		}
		return nil
	case <-t.C:
		return ErrTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}
