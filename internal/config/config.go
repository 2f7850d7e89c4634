// Package config reads the service's configuration from environment
// variables with go-envconfig. Nested sections use a `__` separator, so the
// database URL is DATABASE__URL and the JWT secret is JWT__SECRET.
package config

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// MinJWTSecretBytes is the shortest accepted JWT__SECRET. RFC 7518 §3.2
// requires an HS256 key of at least 256 bits.
const MinJWTSecretBytes = 32

// Config is the whole configuration of authd. It holds secrets: never log or
// print it as a whole.
type Config struct {
	// ListenAddr is the gRPC listen address, host:port.
	ListenAddr string `env:"GRPC__LISTEN_ADDR, default=:50051"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `env:"LOG__LEVEL, default=info"`
	// PprofAddr, when set (e.g. 127.0.0.1:6060), serves net/http/pprof
	// there for profiling; keep it on loopback.
	PprofAddr string `env:"DEBUG__PPROF_ADDR"`
	// DataDir holds the embedded SQLite database (when DATABASE__URL is
	// unset) and, in development mode, the generated JWT secret.
	DataDir string `env:"DATA__DIR, default=./data"`
	// Dev is development mode (authd serve --dev), not an environment
	// variable: see Load.
	Dev bool

	Database Database `env:", prefix=DATABASE__"`
	JWT      JWT      `env:", prefix=JWT__"`
	OTP      OTP      `env:", prefix=OTP__"`
	Login    Login    `env:", prefix=LOGIN__"`
	Audit    Audit    `env:", prefix=AUDIT__"`
	Password Password `env:", prefix=PASSWORD__"`
	SMTP     SMTP     `env:", prefix=SMTP__"`
	Outbox   Outbox   `env:", prefix=OUTBOX__"`
}

// Database configures the PostgreSQL connection and migrations.
type Database struct {
	// URL is a postgres://, postgresql:// or postgresql+asyncpg:// URL, or
	// sqlite:PATH; empty means the embedded SQLite file in DataDir.
	URL string `env:"URL"`
	// AutoMigrate applies pending migrations at start; false leaves them to
	// DBAs (`authd migrate apply` or the Atlas CLI).
	AutoMigrate bool `env:"AUTO_MIGRATE, default=true"`
	// MaxOpenConns caps open connections to the database.
	MaxOpenConns int `env:"MAX_OPEN_CONNS, default=20"`
	// MaxIdleConns is how many idle connections are kept open for reuse.
	MaxIdleConns int `env:"MAX_IDLE_CONNS, default=20"`
	// ConnMaxLifetimeMinutes closes connections older than this (minutes).
	ConnMaxLifetimeMinutes int `env:"CONN_MAX_LIFETIME_MINUTES, default=30"`
}

// JWT configures access and refresh tokens.
type JWT struct {
	// Secret signs access tokens with HMAC-SHA256; at least 32 bytes.
	// Required, except in development mode.
	Secret string `env:"SECRET"`
	// PreviousSecrets are retired secrets, comma-separated: tokens they
	// signed still validate until they are removed; nothing is signed
	// with them.
	PreviousSecrets []string `env:"PREVIOUS_SECRETS"`
	// RefreshReuseGraceSeconds is how long a rotated refresh token is
	// still accepted (concurrent tabs, a lost response), in seconds.
	RefreshReuseGraceSeconds int `env:"REFRESH_REUSE_GRACE_SECONDS, default=10"`
	// ValidationCacheSize is how many verified access tokens ValidateToken
	// remembers until they expire (0: none).
	ValidationCacheSize int `env:"VALIDATION_CACHE_SIZE, default=10000"`
	// LeewaySeconds is the clock skew ValidateToken allows on exp and iat.
	LeewaySeconds int `env:"LEEWAY_SECONDS, default=0"`
	// Issuer is the access token's `iss` claim.
	Issuer string `env:"ISSUER, default=placebrain-auth"`
	// AccessTokenExpireMinutes is the access token lifetime in minutes.
	AccessTokenExpireMinutes int `env:"ACCESS_TOKEN_EXPIRE_MINUTES, default=15"`
	// RefreshTokenExpireDays is the refresh token lifetime in days.
	RefreshTokenExpireDays int `env:"REFRESH_TOKEN_EXPIRE_DAYS, default=30"`
}

// OTP configures e-mail verification codes.
type OTP struct {
	// Secret keys the HMAC that stores codes; when empty a key is derived
	// from JWT__SECRET (HKDF-SHA256), so rotating that secret also voids
	// outstanding codes.
	Secret string `env:"SECRET"`
	// ExpireMinutes is how long a code is valid, in minutes.
	ExpireMinutes int `env:"EXPIRE_MINUTES, default=10"`
	// MaxAttempts is how many verification attempts one code allows.
	MaxAttempts int `env:"MAX_ATTEMPTS, default=5"`
	// ResendCooldownSeconds is the least time between two codes, in seconds.
	ResendCooldownSeconds int `env:"RESEND_COOLDOWN_SECONDS, default=60"`
	// DailyLimit caps the codes one user is sent in 24 hours (0: no cap).
	DailyLimit int `env:"DAILY_LIMIT, default=10"`
}

// Login configures login throttling: MaxFailures failed logins for one
// address within WindowMinutes lock it for LockoutMinutes.
type Login struct {
	MaxFailures    int `env:"MAX_FAILURES, default=10"`
	WindowMinutes  int `env:"WINDOW_MINUTES, default=15"`
	LockoutMinutes int `env:"LOCKOUT_MINUTES, default=15"`
}

// Audit configures the security audit log.
type Audit struct {
	// RetentionDays is how long audit events are kept (0: forever).
	RetentionDays int `env:"RETENTION_DAYS, default=90"`
}

// Password configures password hashing.
type Password struct {
	// BcryptCost is the bcrypt work factor (4 to 31).
	BcryptCost int `env:"BCRYPT_COST, default=12"`
	// HashWorkers is how many hashes run at once; 0 means one per CPU
	// (GOMAXPROCS at start). The workers run at the lowest OS priority, so
	// cheap RPCs keep their latency while hashing saturates the CPU.
	HashWorkers int `env:"HASH_WORKERS, default=0"`
	// HashQueue is how many more hashing requests may wait; past it Login
	// and Register fail fast with RESOURCE_EXHAUSTED.
	HashQueue int `env:"HASH_QUEUE, default=32"`
}

// SMTP configures the relay that delivers e-mail.
type SMTP struct {
	// Host is the relay. Required, except in development mode, where
	// without it e-mails are written to the log.
	Host     string `env:"HOST"`
	Port     int    `env:"PORT, default=587"`
	Username string `env:"USERNAME"`
	Password string `env:"PASSWORD"`
	// From is the sender, e.g. `PlaceBrain <no-reply@example.com>`.
	// Required with Host.
	From string `env:"FROM"`
	// TLS is none (plain text), starttls (required) or tls (implicit
	// TLS, usually port 465).
	TLS string `env:"TLS, default=starttls"`
	// TimeoutSeconds bounds one delivery attempt, in seconds.
	TimeoutSeconds int `env:"TIMEOUT_SECONDS, default=15"`
}

// Outbox configures the e-mail outbox dispatcher.
type Outbox struct {
	// PollIntervalMillis is how often the dispatcher looks for due messages
	// when nothing woke it, in milliseconds.
	PollIntervalMillis int `env:"POLL_INTERVAL_MILLIS, default=1000"`
	// MaxAttempts is how many delivery attempts a message gets before it
	// is marked failed.
	MaxAttempts int `env:"MAX_ATTEMPTS, default=8"`
	// RetryBaseSeconds is the first retry delay; it doubles per attempt.
	RetryBaseSeconds int `env:"RETRY_BASE_SECONDS, default=5"`
	// RetryMaxSeconds caps the retry delay.
	RetryMaxSeconds int `env:"RETRY_MAX_SECONDS, default=600"`
}

// DevSecretFile is the file in the data directory that keeps the JWT secret
// generated in development mode.
const DevSecretFile = "dev-jwt-secret"

// Load reads the configuration from l (the process environment when nil)
// and validates it. Errors name the offending variable.
//
// In development mode (dev true) JWT__SECRET may be unset: a secret is
// generated once and kept in DataDir/dev-jwt-secret (mode 0600), so tokens
// survive restarts; and SMTP__HOST may be unset (e-mails then go to the
// log). Outside development mode both are required.
func Load(ctx context.Context, l envconfig.Lookuper, dev bool) (*Config, error) {
	if l == nil {
		l = envconfig.OsLookuper()
	}
	var c Config
	rec := &recordingLookuper{next: l}
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: rec}); err != nil {
		if errors.Is(err, envconfig.ErrMissingRequired) || rec.last == "" {
			return nil, fmt.Errorf("config: %w", err)
		}
		// A value that does not parse: name the variable, not the Go
		// field, and do not echo the value.
		return nil, fmt.Errorf("config: %s has an invalid value", rec.last)
	}
	c.Dev = dev
	if err := c.required(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if dev && c.JWT.Secret == "" {
		secret, err := devSecret(c.DataDir)
		if err != nil {
			return nil, fmt.Errorf("config: development JWT secret: %w", err)
		}
		c.JWT.Secret = secret
	}
	if c.SMTP.Host == "" && c.SMTP.From == "" {
		c.SMTP.From = "PlaceBrain <no-reply@localhost>"
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

// required reports values that are required outside development mode, and
// SMTP__FROM whenever SMTP__HOST is set.
func (c *Config) required() error {
	var missing []string
	if !c.Dev && c.JWT.Secret == "" {
		missing = append(missing, "JWT__SECRET")
	}
	if !c.Dev && c.SMTP.Host == "" {
		missing = append(missing, "SMTP__HOST")
	}
	if c.SMTP.Host != "" && c.SMTP.From == "" {
		missing = append(missing, "SMTP__FROM")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing required value: %s", strings.Join(missing, ", "))
	}
	return nil
}

// devSecret reads the development JWT secret from dir, creating it (32
// random bytes, base64url) on first use.
func devSecret(dir string) (string, error) {
	path := filepath.Join(dir, DevSecretFile)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= MinJWTSecretBytes {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	secret := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", err
	}
	return secret, nil
}

// recordingLookuper remembers the last variable that had a value, which is
// the one whose parsing failed when processing stops with a parse error.
type recordingLookuper struct {
	next envconfig.Lookuper
	last string
}

func (r *recordingLookuper) Lookup(key string) (string, bool) {
	v, ok := r.next.Lookup(key)
	if ok {
		r.last = key
	}
	return v, ok
}

func (c *Config) validate() error {
	type rule struct {
		ok  bool
		msg string
	}
	rules := []rule{
		{len(c.JWT.Secret) >= MinJWTSecretBytes, fmt.Sprintf("JWT__SECRET must be at least %d bytes", MinJWTSecretBytes)},
		{c.JWT.AccessTokenExpireMinutes > 0, "JWT__ACCESS_TOKEN_EXPIRE_MINUTES must be positive"},
		{previousOK(c.JWT.PreviousSecrets), fmt.Sprintf("every JWT__PREVIOUS_SECRETS entry must be at least %d bytes", MinJWTSecretBytes)},
		{c.JWT.LeewaySeconds >= 0, "JWT__LEEWAY_SECONDS must not be negative"},
		{c.JWT.ValidationCacheSize >= 0, "JWT__VALIDATION_CACHE_SIZE must not be negative"},
		{c.JWT.RefreshReuseGraceSeconds >= 0, "JWT__REFRESH_REUSE_GRACE_SECONDS must not be negative"},
		{c.Login.MaxFailures >= 0, "LOGIN__MAX_FAILURES must not be negative"},
		{c.Login.MaxFailures == 0 || (c.Login.WindowMinutes > 0 && c.Login.LockoutMinutes > 0), "LOGIN__WINDOW_MINUTES and LOGIN__LOCKOUT_MINUTES must be positive"},
		{c.Audit.RetentionDays >= 0, "AUDIT__RETENTION_DAYS must not be negative"},
		{c.JWT.RefreshTokenExpireDays > 0, "JWT__REFRESH_TOKEN_EXPIRE_DAYS must be positive"},
		{c.OTP.Secret == "" || len(c.OTP.Secret) >= 32, "OTP__SECRET must be empty or at least 32 bytes"},
		{c.OTP.ExpireMinutes > 0, "OTP__EXPIRE_MINUTES must be positive"},
		{c.OTP.MaxAttempts > 0, "OTP__MAX_ATTEMPTS must be positive"},
		{c.OTP.ResendCooldownSeconds >= 0, "OTP__RESEND_COOLDOWN_SECONDS must not be negative"},
		{c.OTP.DailyLimit >= 0, "OTP__DAILY_LIMIT must not be negative"},
		{c.Password.BcryptCost >= 4 && c.Password.BcryptCost <= 31, "PASSWORD__BCRYPT_COST must be between 4 and 31"},
		{c.Password.HashWorkers >= 0 && c.Password.HashQueue >= 0, "PASSWORD__HASH_WORKERS and PASSWORD__HASH_QUEUE must not be negative"},
		{c.SMTP.Port > 0 && c.SMTP.Port < 65536, "SMTP__PORT must be a TCP port"},
		{c.SMTP.TLS == "none" || c.SMTP.TLS == "starttls" || c.SMTP.TLS == "tls", "SMTP__TLS must be none, starttls or tls"},
		{validFrom(c.SMTP.From), "SMTP__FROM must be an address such as `PlaceBrain <no-reply@example.com>`"},
		{c.SMTP.TimeoutSeconds > 0, "SMTP__TIMEOUT_SECONDS must be positive"},
		{c.Database.MaxOpenConns > 0, "DATABASE__MAX_OPEN_CONNS must be positive"},
		{c.Database.MaxIdleConns >= 0, "DATABASE__MAX_IDLE_CONNS must not be negative"},
		{c.Outbox.PollIntervalMillis > 0, "OUTBOX__POLL_INTERVAL_MILLIS must be positive"},
		{c.Outbox.MaxAttempts > 0, "OUTBOX__MAX_ATTEMPTS must be positive"},
		{c.Outbox.RetryBaseSeconds > 0 && c.Outbox.RetryMaxSeconds >= c.Outbox.RetryBaseSeconds, "OUTBOX__RETRY_BASE_SECONDS must be positive and at most OUTBOX__RETRY_MAX_SECONDS"},
	}
	var msgs []string
	for _, r := range rules {
		if !r.ok {
			msgs = append(msgs, r.msg)
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

func previousOK(secrets []string) bool {
	for _, s := range secrets {
		if len(s) < MinJWTSecretBytes {
			return false
		}
	}
	return true
}

func validFrom(s string) bool {
	_, err := mail.ParseAddress(s)
	return err == nil
}

// AccessTokenTTL is the access token lifetime.
func (j JWT) AccessTokenTTL() time.Duration {
	return time.Duration(j.AccessTokenExpireMinutes) * time.Minute
}

// RefreshTokenTTL is the refresh token lifetime.
func (j JWT) RefreshTokenTTL() time.Duration {
	return time.Duration(j.RefreshTokenExpireDays) * 24 * time.Hour
}
