package mail

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func otpData() map[string]string {
	return map[string]string{"code": "042137", "expiresMinutes": "10"}
}

func TestRenderOTP(t *testing.T) {
	got, err := render(TemplateOTP, otpData())
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if diff := cmp.Diff("Your PlaceBrain verification code", got.Subject); diff != "" {
		t.Errorf("subject mismatch (-want +got):\n%s", diff)
	}
	bodies := []struct {
		name, body string
	}{
		{"text", got.Text},
		{"html", got.HTML},
	}
	for _, b := range bodies {
		t.Run(b.name, func(t *testing.T) {
			for _, want := range []string{"042137", "Hello,", "expires in 10 minutes"} {
				if !strings.Contains(b.body, want) {
					t.Errorf("%s body does not contain %q:\n%s", b.name, want, b.body)
				}
			}
			if strings.Contains(b.body, "<no value>") {
				t.Errorf("%s body has an unfilled key:\n%s", b.name, b.body)
			}
		})
	}
	if strings.Contains(got.Text, "<p>") {
		t.Errorf("text body contains HTML:\n%s", got.Text)
	}
	if !strings.Contains(got.HTML, "<p>") {
		t.Errorf("HTML body has no HTML:\n%s", got.HTML)
	}
}

// The e-mail shows no text a caller chose: a username such as
// "Security team: verify at https://..." would read as ours. Rows queued
// before the username was dropped still carry it in their data; it is not
// printed either.
func TestRenderShowsNoUsername(t *testing.T) {
	data := otpData()
	data["username"] = "Security team: verify at https://evil.example/verify"
	got, err := render(TemplateOTP, data)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	for _, part := range []struct{ name, body string }{{"text", got.Text}, {"html", got.HTML}} {
		for _, bad := range []string{"Security", "evil", "https://"} {
			if strings.Contains(part.body, bad) {
				t.Errorf("%s body contains %q:\n%s", part.name, bad, part.body)
			}
		}
	}
}

// The HTML body escapes its values (html/template), whatever they hold.
func TestRenderEscapesHTML(t *testing.T) {
	data := otpData()
	data["code"] = `<script>alert("x")</script>&`
	got, err := render(TemplateOTP, data)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if strings.Contains(got.HTML, "<script>") {
		t.Errorf("HTML body contains an unescaped <script>:\n%s", got.HTML)
	}
	if !strings.Contains(got.HTML, "&lt;script&gt;") {
		t.Errorf("HTML body does not contain the escaped value:\n%s", got.HTML)
	}
}

func TestRenderErrors(t *testing.T) {
	without := func(key string) map[string]string {
		m := otpData()
		delete(m, key)
		return m
	}
	tests := []struct {
		name     string
		template string
		data     map[string]string
		wantText string
	}{
		{"missing code", TemplateOTP, without("code"), "code"},
		{"missing expiresMinutes", TemplateOTP, without("expiresMinutes"), "expiresMinutes"},
		{"nil data", TemplateOTP, nil, "otp"},
		{"unknown template", "welcome", otpData(), `unknown template "welcome"`},
		{"empty template name", "", otpData(), "unknown template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render(tt.template, tt.data)
			if err == nil {
				t.Fatalf("render = %+v, want an error", got)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			if diff := cmp.Diff(Rendered{}, got); diff != "" {
				t.Errorf("render returned a message with an error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	const (
		base     = 5 * time.Second
		maxDelay = 600 * time.Second
	)
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{-3, base},
		{0, base},
		{1, base},
		{2, 2 * base},
		{3, 4 * base},
		{4, 8 * base},
		{7, 320 * time.Second},
		{8, maxDelay}, // 640s capped
		{9, maxDelay},
		{64, maxDelay},
		{1 << 20, maxDelay},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("attempt %d", tt.attempt), func(t *testing.T) {
			if diff := cmp.Diff(tt.want, RetryDelay(tt.attempt, base, maxDelay)); diff != "" {
				t.Errorf("RetryDelay(%d) mismatch (-want +got):\n%s", tt.attempt, diff)
			}
		})
	}
}
