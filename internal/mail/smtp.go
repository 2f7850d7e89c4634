package mail

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	"github.com/jordan-wright/email"
)

// TLS modes of SMTPConfig.TLS.
const (
	TLSNone     = "none"     // plain text, no TLS (a relay on localhost or a private network)
	TLSStartTLS = "starttls" // STARTTLS required
	TLSImplicit = "tls"      // TLS from the first byte (SMTPS, port 465)
)

// SMTPConfig names an SMTP relay.
type SMTPConfig struct {
	Host     string
	Port     int
	Username string
	Password string
	// From is the sender, with or without a display name.
	From string
	TLS  string
	// Timeout bounds one whole delivery: connecting, every command and
	// the message.
	Timeout time.Duration
}

// Envelope says who a message goes to.
type Envelope struct {
	// ID is the outbox message's id: the Message-ID header is made from it
	// (MessageID), the same on every resend.
	ID uuid.UUID
	// To is the recipient's address.
	To string
	// UserID is the recipient's account (nil if none), for logs.
	UserID *uuid.UUID
	// Data are the template's values; LogSender shows the code from them.
	Data map[string]string
}

// Sender delivers one rendered message.
type Sender interface {
	Send(ctx context.Context, env Envelope, r Rendered) error
}

// PermanentError is a delivery failure that retrying cannot fix: the relay
// answered with a 5xx reply (RFC 5321 §4.2.1).
type PermanentError struct{ Err error }

func (e PermanentError) Error() string { return e.Err.Error() }
func (e PermanentError) Unwrap() error { return e.Err }

// SMTPSender delivers mail through an SMTP relay. Messages are built with
// github.com/jordan-wright/email (MIME, plain text and HTML) and delivered
// with github.com/emersion/go-smtp's client, whose connection every step
// is bounded by the timeout: jordan-wright's own Send has no timeouts, and
// a relay that stopped answering would hold the dispatcher for good.
type SMTPSender struct {
	c        SMTPConfig
	addr     string
	envFrom  string
	tlsConf  *tls.Config
	useLogin bool
}

// NewSMTPSender returns a sender for c, whose Timeout must be positive. It
// fails when c.From is not an address.
func NewSMTPSender(c SMTPConfig) (*SMTPSender, error) {
	from, err := netmail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("SMTP__FROM is not an address: %w", err)
	}
	return &SMTPSender{
		c:        c,
		addr:     net.JoinHostPort(c.Host, strconv.Itoa(c.Port)),
		envFrom:  from.Address,
		tlsConf:  &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12},
		useLogin: c.Username != "",
	}, nil
}

// boundedConn caps every deadline the SMTP client sets at the delivery's
// overall deadline.
type boundedConn struct {
	net.Conn
	deadline time.Time
}

func (b boundedConn) SetDeadline(t time.Time) error { return b.Conn.SetDeadline(b.min(t)) }
func (b boundedConn) SetReadDeadline(t time.Time) error {
	return b.Conn.SetReadDeadline(b.min(t))
}
func (b boundedConn) SetWriteDeadline(t time.Time) error {
	return b.Conn.SetWriteDeadline(b.min(t))
}
func (b boundedConn) min(t time.Time) time.Time {
	if t.IsZero() || t.After(b.deadline) {
		return b.deadline
	}
	return t
}

// Send delivers one message within the timeout. A 5xx reply is a
// PermanentError.
func (s *SMTPSender) Send(ctx context.Context, env Envelope, r Rendered) error {
	e := email.NewEmail()
	e.From = s.c.From
	e.To = []string{env.To}
	e.Subject = r.Subject
	e.Text = []byte(r.Text)
	e.HTML = []byte(r.HTML)
	if env.ID != uuid.Nil {
		e.Headers.Set("Message-ID", MessageID(env.ID, s.envFrom))
	}
	msg, err := e.Bytes()
	if err != nil {
		return PermanentError{fmt.Errorf("build message: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, s.c.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.addr, err)
	}
	conn := net.Conn(boundedConn{Conn: raw, deadline: deadline})
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return err
	}
	var c *smtp.Client
	switch s.c.TLS {
	case TLSImplicit:
		c = smtp.NewClient(boundedConn{Conn: tls.Client(raw, s.tlsConf), deadline: deadline})
	case TLSStartTLS:
		if c, err = smtp.NewClientStartTLS(conn, s.tlsConf); err != nil {
			conn.Close()
			return classify(s.addr, err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	if s.useLogin {
		if err := c.Auth(sasl.NewPlainClient("", s.c.Username, s.c.Password)); err != nil {
			return classify(s.addr, err)
		}
	}
	if err := c.SendMail(s.envFrom, []string{env.To}, bytes.NewReader(msg)); err != nil {
		return classify(s.addr, err)
	}
	_ = c.Quit()
	return nil
}

// MessageID is the Message-ID header (RFC 5322 §3.6.4) of the outbox
// message id sent from the address from: "<id@domain of from>". It is
// derived from the outbox row, so a message sent again after a crash
// carries the same one and a relay or mailbox can drop the copy.
func MessageID(id uuid.UUID, from string) string {
	domain := from
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		domain = from[i+1:]
	}
	return "<" + id.String() + "@" + domain + ">"
}

// classify wraps a 5xx reply as a PermanentError.
func classify(addr string, err error) error {
	err = fmt.Errorf("smtp %s: %w", addr, err)
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		return PermanentError{err}
	}
	return err
}

// LogSender writes messages to the log instead of sending them: for
// development mode without an SMTP relay. The log line holds the code (as
// "code"), the text body and the user id, never the address.
type LogSender struct{ Log *slog.Logger }

// Send implements Sender.
func (l LogSender) Send(ctx context.Context, env Envelope, r Rendered) error {
	var uid string
	if env.UserID != nil {
		uid = env.UserID.String()
	}
	l.Log.WarnContext(ctx, "development mode: e-mail written to the log, not sent",
		"user_id", uid, "subject", r.Subject, "code", env.Data["code"], "text", r.Text)
	return nil
}
