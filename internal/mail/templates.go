package mail

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	texttemplate "text/template"
)

// TemplateOTP is the verification-code e-mail. Its data keys are code and
// expiresMinutes. It shows nothing a caller chose (no username): text a
// stranger registered with could otherwise pass for ours in the message.
const TemplateOTP = "otp"

// TemplateReset is the password-reset-code e-mail. Its data keys are code
// and expiresMinutes; like TemplateOTP it shows nothing a caller chose.
const TemplateReset = "reset"

// subjects holds each template's subject line.
var subjects = map[string]string{
	TemplateOTP:   "Your PlaceBrain verification code",
	TemplateReset: "Your PlaceBrain password reset code",
}

//go:embed templates/*.tmpl
var templateFS embed.FS

var (
	textTemplates = texttemplate.Must(texttemplate.New("").Option("missingkey=error").ParseFS(templateFS, "templates/*.txt.tmpl"))
	htmlTemplates = htmltemplate.Must(htmltemplate.New("").Option("missingkey=error").ParseFS(templateFS, "templates/*.html.tmpl"))
)

// Rendered is a message ready to send.
type Rendered struct {
	Subject, Text, HTML string
}

// render fills the named template's subject, plain-text and HTML bodies.
func render(name string, data map[string]string) (Rendered, error) {
	subject, ok := subjects[name]
	if !ok {
		return Rendered{}, fmt.Errorf("mail: unknown template %q", name)
	}
	var txt, html bytes.Buffer
	if err := textTemplates.ExecuteTemplate(&txt, name+".txt.tmpl", data); err != nil {
		return Rendered{}, fmt.Errorf("mail: render %s text: %w", name, err)
	}
	if err := htmlTemplates.ExecuteTemplate(&html, name+".html.tmpl", data); err != nil {
		return Rendered{}, fmt.Errorf("mail: render %s html: %w", name, err)
	}
	return Rendered{Subject: subject, Text: txt.String(), HTML: html.String()}, nil
}
