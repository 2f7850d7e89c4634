package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strconv"
	"time"

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

// ErrTimeout reports a delivery that did not finish within the timeout.
var ErrTimeout = errors.New("smtp: delivery timed out")

// send delivers one message. The library has no timeouts of its own, so
// the delivery runs in a goroutine and send gives up after c.Timeout; a
// relay that hangs keeps that goroutine until the connection dies.
func (s *SMTPSender) send(ctx context.Context, to string, r rendered) error {
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
