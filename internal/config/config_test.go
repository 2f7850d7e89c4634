package config_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sethvargo/go-envconfig"

	"github.com/placebrain/auth/internal/config"
)

const (
	testSecret = "jwt-secret-0123456789-abcdefghijk" // 33 bytes
	testDBURL  = "postgresql+asyncpg://auth:dbpass@db:5432/auth"
)

func minimalEnv() map[string]string {
	return map[string]string{
		"DATABASE__URL": testDBURL,
		"JWT__SECRET":   testSecret,
		"SMTP__HOST":    "smtp.example.com",
		"SMTP__FROM":    "PlaceBrain <no-reply@example.com>",
	}
}

// envWith returns minimalEnv with set applied and the keys in del removed.
func envWith(set map[string]string, del ...string) map[string]string {
	m := minimalEnv()
	maps.Copy(m, set)
	for _, k := range del {
		delete(m, k)
	}
	return m
}

func load(m map[string]string) (*config.Config, error) {
	return config.Load(context.Background(), envconfig.MapLookuper(m), false)
}

func TestLoadDefaults(t *testing.T) {
	got, err := load(minimalEnv())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &config.Config{
		ListenAddr: ":50051",
		LogLevel:   "info",
		DataDir:    "./data",
		Database: config.Database{
			URL:                    testDBURL,
			AutoMigrate:            true,
			MaxOpenConns:           20,
			MaxIdleConns:           20,
			ConnMaxLifetimeMinutes: 30,
		},
		JWT: config.JWT{
			Secret:                   testSecret,
			Issuer:                   "placebrain-auth",
			AccessTokenExpireMinutes: 15,
			RefreshTokenExpireDays:   30,
			RefreshReuseGraceSeconds: 10,
			ValidationCacheSize:      10000,
		},
		OTP: config.OTP{
			ExpireMinutes:         10,
			MaxAttempts:           5,
			ResendCooldownSeconds: 60,
			DailyLimit:            10,
		},
		Login:    config.Login{MaxFailures: 10, WindowMinutes: 15, LockoutMinutes: 15},
		Audit:    config.Audit{RetentionDays: 90},
		Password: config.Password{BcryptCost: 12, HashQueue: 32},
		SMTP: config.SMTP{
			Host:           "smtp.example.com",
			Port:           587,
			From:           "PlaceBrain <no-reply@example.com>",
			TLS:            "starttls",
			TimeoutSeconds: 15,
		},
		Outbox: config.Outbox{
			PollIntervalMillis: 1000,
			MaxAttempts:        8,
			RetryBaseSeconds:   5,
			RetryMaxSeconds:    600,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load defaults mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(15*time.Minute, got.JWT.AccessTokenTTL()); diff != "" {
		t.Errorf("AccessTokenTTL mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(30*24*time.Hour, got.JWT.RefreshTokenTTL()); diff != "" {
		t.Errorf("RefreshTokenTTL mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadOverrides(t *testing.T) {
	tests := []struct {
		name  string
		set   map[string]string
		check func(*config.Config) (want, got any)
	}{
		{"auto migrate false", map[string]string{"DATABASE__AUTO_MIGRATE": "false"},
			func(c *config.Config) (any, any) { return false, c.Database.AutoMigrate }},
		{"auto migrate true", map[string]string{"DATABASE__AUTO_MIGRATE": "true"},
			func(c *config.Config) (any, any) { return true, c.Database.AutoMigrate }},
		{"listen addr", map[string]string{"GRPC__LISTEN_ADDR": "127.0.0.1:9000"},
			func(c *config.Config) (any, any) { return "127.0.0.1:9000", c.ListenAddr }},
		{"access token minutes", map[string]string{"JWT__ACCESS_TOKEN_EXPIRE_MINUTES": "5"},
			func(c *config.Config) (any, any) { return 5 * time.Minute, c.JWT.AccessTokenTTL() }},
		{"refresh token days", map[string]string{"JWT__REFRESH_TOKEN_EXPIRE_DAYS": "2"},
			func(c *config.Config) (any, any) { return 48 * time.Hour, c.JWT.RefreshTokenTTL() }},
		{"smtp implicit tls", map[string]string{"SMTP__TLS": "tls", "SMTP__PORT": "465"},
			func(c *config.Config) (any, any) { return [2]any{"tls", 465}, [2]any{c.SMTP.TLS, c.SMTP.Port} }},
		{"smtp none", map[string]string{"SMTP__TLS": "none"},
			func(c *config.Config) (any, any) { return "none", c.SMTP.TLS }},
		{"otp secret", map[string]string{"OTP__SECRET": strings.Repeat("o", 32)},
			func(c *config.Config) (any, any) { return strings.Repeat("o", 32), c.OTP.Secret }},
		{"bcrypt cost", map[string]string{"PASSWORD__BCRYPT_COST": "4"},
			func(c *config.Config) (any, any) { return 4, c.Password.BcryptCost }},
		{"zero resend cooldown", map[string]string{"OTP__RESEND_COOLDOWN_SECONDS": "0"},
			func(c *config.Config) (any, any) { return 0, c.OTP.ResendCooldownSeconds }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(envWith(tt.set))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want, got := tt.check(c)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	shortSecret := "short-secret-31-bytes-xxxxxxxxx"
	if len(shortSecret) != 31 {
		t.Fatalf("len(shortSecret) = %d", len(shortSecret))
	}
	tests := []struct {
		name     string
		env      map[string]string
		wantText string
	}{
		{"missing JWT__SECRET", envWith(nil, "JWT__SECRET"), "JWT__SECRET"},
		{"missing SMTP__HOST", envWith(nil, "SMTP__HOST"), "SMTP__HOST"},
		{"missing SMTP__FROM", envWith(nil, "SMTP__FROM"), "SMTP__FROM"},
		{"31-byte secret", envWith(map[string]string{"JWT__SECRET": shortSecret}), "JWT__SECRET"},
		{"empty secret", envWith(map[string]string{"JWT__SECRET": ""}), "JWT__SECRET"},
		{"bogus SMTP__TLS", envWith(map[string]string{"SMTP__TLS": "bogus"}), "SMTP__TLS"},
		{"SMTP__PORT 0", envWith(map[string]string{"SMTP__PORT": "0"}), "SMTP__PORT"},
		{"SMTP__PORT 65536", envWith(map[string]string{"SMTP__PORT": "65536"}), "SMTP__PORT"},
		{"short OTP__SECRET", envWith(map[string]string{"OTP__SECRET": "short"}), "OTP__SECRET"},
		{"bcrypt cost 3", envWith(map[string]string{"PASSWORD__BCRYPT_COST": "3"}), "PASSWORD__BCRYPT_COST"},
		{"bcrypt cost 32", envWith(map[string]string{"PASSWORD__BCRYPT_COST": "32"}), "PASSWORD__BCRYPT_COST"},
		{"zero access minutes", envWith(map[string]string{"JWT__ACCESS_TOKEN_EXPIRE_MINUTES": "0"}), "JWT__ACCESS_TOKEN_EXPIRE_MINUTES"},
		{"negative refresh days", envWith(map[string]string{"JWT__REFRESH_TOKEN_EXPIRE_DAYS": "-1"}), "JWT__REFRESH_TOKEN_EXPIRE_DAYS"},
		{"retry base above max", envWith(map[string]string{"OUTBOX__RETRY_BASE_SECONDS": "700"}), "OUTBOX__RETRY_BASE_SECONDS"},
		{"nothing set", map[string]string{}, "JWT__SECRET, SMTP__HOST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(tt.env)
			if err == nil {
				t.Fatalf("Load = %+v, want an error", c)
			}
			if c != nil {
				t.Errorf("Load returned a config with an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantText) {
				t.Errorf("error %q does not name %s", msg, tt.wantText)
			}
			for _, secret := range []string{testSecret, shortSecret, "dbpass", tt.env["JWT__SECRET"]} {
				if secret != "" && strings.Contains(msg, secret) {
					t.Errorf("error %q reveals the secret %q", msg, secret)
				}
			}
		})
	}
}

func TestLoadReportsEveryRule(t *testing.T) {
	_, err := load(envWith(map[string]string{
		"JWT__SECRET": "too-short",
		"SMTP__TLS":   "bogus",
	}))
	if err == nil {
		t.Fatal("Load: want an error")
	}
	for _, name := range []string{"JWT__SECRET", "SMTP__TLS"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "too-short") {
		t.Errorf("error %q reveals the secret", err)
	}
}

// TestLoadParseErrorNamesVariable checks Load's promise that errors name the
// offending variable when a value does not parse as its type. go-envconfig
// names the Go field path ("SMTP: Port") instead, so this fails today.
func TestLoadParseErrorNamesVariable(t *testing.T) {
	tests := []struct {
		key, value string
	}{
		{"SMTP__PORT", "abc"},
		{"DATABASE__AUTO_MIGRATE", "yes"},
		{"PASSWORD__BCRYPT_COST", "twelve"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			_, err := load(envWith(map[string]string{tt.key: tt.value}))
			if err == nil {
				t.Fatalf("Load with %s=%q: want an error", tt.key, tt.value)
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q does not name %s", err, tt.key)
			}
		})
	}
}

// Development mode needs nothing: SQLite in DATA__DIR, a JWT secret made
// once and kept there (mode 0600), e-mails to the log.
func TestLoadDevelopmentMode(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"DATA__DIR": dir}
	c1, err := config.Load(context.Background(), envconfig.MapLookuper(env), true)
	if err != nil {
		t.Fatalf("Load dev: %v", err)
	}
	if !c1.Dev || c1.Database.URL != "" || c1.SMTP.Host != "" || len(c1.JWT.Secret) < config.MinJWTSecretBytes {
		t.Fatalf("dev config = %+v", c1)
	}
	fi, err := os.Stat(filepath.Join(dir, config.DevSecretFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, %v", fi, err)
	}
	c2, err := config.Load(context.Background(), envconfig.MapLookuper(env), true)
	if err != nil || c2.JWT.Secret != c1.JWT.Secret {
		t.Errorf("second start: secret changed (%v)", err)
	}
	// An explicit secret wins and nothing is generated.
	dir2 := t.TempDir()
	c3, err := config.Load(context.Background(), envconfig.MapLookuper(map[string]string{"DATA__DIR": dir2, "JWT__SECRET": testSecret}), true)
	if err != nil || c3.JWT.Secret != testSecret {
		t.Fatalf("explicit secret: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, config.DevSecretFile)); !os.IsNotExist(err) {
		t.Errorf("secret file written although JWT__SECRET was set")
	}
	// SMTP__HOST without SMTP__FROM is an error in any mode.
	if _, err := config.Load(context.Background(), envconfig.MapLookuper(map[string]string{"DATA__DIR": dir, "SMTP__HOST": "x"}), true); err == nil || !strings.Contains(err.Error(), "SMTP__FROM") {
		t.Errorf("SMTP__HOST without SMTP__FROM: %v", err)
	}
}
