package config_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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

// transportDefaults returns g with the transport limits' defaults.
func transportDefaults(g config.GRPC) config.GRPC {
	g.MaxConcurrentStreams, g.MaxStreamingRPCs, g.MaxConnections, g.MaxConnectionsPerPeer = 1000, 64, 256, 64
	g.KeepaliveMinTime, g.HandshakeTimeout = 10*time.Second, 10*time.Second
	g.MaxConnectionIdle, g.MaxConnectionAge, g.MaxConnectionAgeGrace = 15*time.Minute, 30*time.Minute, 30*time.Second
	return g
}

func load(m map[string]string) (*config.Config, error) {
	return config.Load(context.Background(), envconfig.MapLookuper(m), config.Options{})
}

func TestLoadDefaults(t *testing.T) {
	got, err := load(minimalEnv())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &config.Config{
		GRPC:  transportDefaults(config.GRPC{ListenAddr: ":50051"}),
		Log:   config.Log{Level: slog.LevelInfo, Requests: config.RequestsOff},
		Data:  config.Data{Dir: "./data"},
		Debug: config.Debug{},
		Database: config.Database{
			URL:              testDBURL,
			AutoMigrate:      true,
			MaxOpenConns:     20,
			MaxIdleConns:     20,
			ConnMaxLifetime:  30 * time.Minute,
			ConnectTimeout:   5 * time.Second,
			StatementTimeout: 5 * time.Second,
		},
		JWT: config.JWT{
			Secret:              testSecret,
			Issuer:              "placebrain-auth",
			AccessTokenTTL:      15 * time.Minute,
			RefreshTokenTTL:     30 * 24 * time.Hour,
			RefreshReuseGrace:   10 * time.Second,
			RefreshRecovery:     15 * time.Minute,
			SessionMax:          90 * 24 * time.Hour,
			RevokedRetention:    7 * 24 * time.Hour,
			ValidationCacheSize: 10000,
		},
		OTP: config.OTP{
			TTL:                  10 * time.Minute,
			MaxAttempts:          5,
			ResendCooldown:       60 * time.Second,
			DailyLimit:           10,
			AccountDailyLimit:    20,
			AccountDailyFailures: 50,
		},
		Login: config.Login{MaxFailures: 10, Window: 15 * time.Minute, Lockout: 15 * time.Minute,
			AccountDailyFailures: 100, AccountDelay: 2 * time.Second, TrustedSource: 90 * 24 * time.Hour},
		Register: config.Register{MaxPerSource: 10, Window: time.Hour},
		Reset:    config.Reset{MaxAttempts: 3, AccountDailyFailures: 10},
		Users:    config.Users{UnverifiedTTL: 72 * time.Hour},
		Cleanup:  config.Cleanup{Interval: time.Hour, BatchSize: 1000},
		Audit:    config.Audit{Retention: 90 * 24 * time.Hour},
		Password: config.Password{BcryptCost: 12, HashQueue: 32},
		SMTP: config.SMTP{
			Host:    "smtp.example.com",
			Port:    587,
			From:    "PlaceBrain <no-reply@example.com>",
			TLS:     "starttls",
			Timeout: 15 * time.Second,
		},
		Outbox: config.Outbox{
			PollInterval: time.Second,
			MaxAttempts:  8,
			RetryBase:    5 * time.Second,
			RetryMax:     600 * time.Second,
			Retention:    7 * 24 * time.Hour,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load defaults mismatch (-want +got):\n%s", diff)
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
			func(c *config.Config) (any, any) { return "127.0.0.1:9000", c.GRPC.ListenAddr }},
		{"access token minutes", map[string]string{"JWT__ACCESS_TOKEN_EXPIRE_MINUTES": "5"},
			func(c *config.Config) (any, any) { return 5 * time.Minute, c.JWT.AccessTokenTTL }},
		{"refresh token days", map[string]string{"JWT__REFRESH_TOKEN_EXPIRE_DAYS": "2"},
			func(c *config.Config) (any, any) { return 48 * time.Hour, c.JWT.RefreshTokenTTL }},
		{"outbox poll millis", map[string]string{"OUTBOX__POLL_INTERVAL_MILLIS": "250"},
			func(c *config.Config) (any, any) { return 250 * time.Millisecond, c.Outbox.PollInterval }},
		{"leeway seconds, explicit plus", map[string]string{"JWT__LEEWAY_SECONDS": "+3"},
			func(c *config.Config) (any, any) { return 3 * time.Second, c.JWT.Leeway }},
		{"log level", map[string]string{"LOG__LEVEL": "warn"},
			func(c *config.Config) (any, any) { return slog.LevelWarn, c.Log.Level }},
		{"request log", map[string]string{"LOG__REQUESTS": "info"},
			func(c *config.Config) (any, any) {
				l, on := c.Log.RequestLevel()
				return [2]any{slog.LevelInfo, true}, [2]any{l, on}
			}},
		{"request log at debug", map[string]string{"LOG__REQUESTS": "debug"},
			func(c *config.Config) (any, any) {
				l, on := c.Log.RequestLevel()
				return [2]any{slog.LevelDebug, true}, [2]any{l, on}
			}},
		{"metrics addr", map[string]string{"METRICS__ADDR": "127.0.0.1:9090"},
			func(c *config.Config) (any, any) { return "127.0.0.1:9090", c.Metrics.Addr }},
		{"smtp implicit tls", map[string]string{"SMTP__TLS": "tls", "SMTP__PORT": "465"},
			func(c *config.Config) (any, any) { return [2]any{"tls", 465}, [2]any{c.SMTP.TLS, c.SMTP.Port} }},
		{"smtp none", map[string]string{"SMTP__TLS": "none"},
			func(c *config.Config) (any, any) { return "none", c.SMTP.TLS }},
		{"otp secret", map[string]string{"OTP__SECRET": strings.Repeat("o", 32)},
			func(c *config.Config) (any, any) { return strings.Repeat("o", 32), c.OTP.Secret }},
		{"bcrypt cost", map[string]string{"PASSWORD__BCRYPT_COST": "4"},
			func(c *config.Config) (any, any) { return 4, c.Password.BcryptCost }},
		{"zero resend cooldown", map[string]string{"OTP__RESEND_COOLDOWN_SECONDS": "0"},
			func(c *config.Config) (any, any) { return time.Duration(0), c.OTP.ResendCooldown }},
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
		{"minutes with a unit", envWith(map[string]string{"JWT__ACCESS_TOKEN_EXPIRE_MINUTES": "15m"}), "JWT__ACCESS_TOKEN_EXPIRE_MINUTES must be a whole number of minutes"},
		{"fractional seconds", envWith(map[string]string{"SMTP__TIMEOUT_SECONDS": "1.5"}), "SMTP__TIMEOUT_SECONDS must be a whole number of seconds"},
		{"days out of range", envWith(map[string]string{"AUDIT__RETENTION_DAYS": "999999999999"}), "AUDIT__RETENTION_DAYS must be a whole number of days"},
		{"bogus log level", envWith(map[string]string{"LOG__LEVEL": "loud"}), "LOG__LEVEL"},
		{"bogus request log", envWith(map[string]string{"LOG__REQUESTS": "warn"}), "LOG__REQUESTS must be off, debug or info"},
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
	dev := config.Options{Dev: true}
	c1, err := config.Load(context.Background(), envconfig.MapLookuper(env), dev)
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
	c2, err := config.Load(context.Background(), envconfig.MapLookuper(env), dev)
	if err != nil || c2.JWT.Secret != c1.JWT.Secret {
		t.Errorf("second start: secret changed (%v)", err)
	}
	// An explicit secret wins and nothing is generated.
	dir2 := t.TempDir()
	c3, err := config.Load(context.Background(), envconfig.MapLookuper(map[string]string{"DATA__DIR": dir2, "JWT__SECRET": testSecret}), dev)
	if err != nil || c3.JWT.Secret != testSecret {
		t.Fatalf("explicit secret: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, config.DevSecretFile)); !os.IsNotExist(err) {
		t.Errorf("secret file written although JWT__SECRET was set")
	}
	// SMTP__HOST without SMTP__FROM is an error in any mode.
	if _, err := config.Load(context.Background(), envconfig.MapLookuper(map[string]string{"DATA__DIR": dir, "SMTP__HOST": "x"}), dev); err == nil || !strings.Contains(err.Error(), "SMTP__FROM") {
		t.Errorf("SMTP__HOST without SMTP__FROM: %v", err)
	}
}

// The operators' .env.example loads unchanged and gives the defaults.
func TestLoadEnvExample(t *testing.T) {
	b, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env.example line %q is not KEY=VALUE", line)
		}
		if v != "" {
			env[k] = v
		}
	}
	maps.Copy(env, minimalEnv())
	got, err := load(env)
	if err != nil {
		t.Fatalf("Load(.env.example): %v", err)
	}
	want, err := load(minimalEnv())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf(".env.example differs from the defaults (-defaults +.env.example):\n%s", diff)
	}
}

// authd migrate reads only the storage sections: nothing else is required
// or validated.
func TestLoadStorageSections(t *testing.T) {
	c, err := config.Load(context.Background(), envconfig.MapLookuper(map[string]string{
		"DATABASE__URL": testDBURL,
		"SMTP__PORT":    "not a port", // another section: not read
		"JWT__SECRET":   "short",
	}), config.Options{Sections: config.Storage})
	if err != nil {
		t.Fatalf("Load(storage): %v", err)
	}
	if c.Database.URL != testDBURL || c.Data.Dir != "./data" || c.JWT.Secret != "" || c.SMTP.Port != 0 {
		t.Errorf("storage config = %+v", c)
	}
	if _, err := config.Load(context.Background(), envconfig.MapLookuper(map[string]string{"DATABASE__MAX_OPEN_CONNS": "0"}),
		config.Options{Sections: config.Storage}); err == nil || !strings.Contains(err.Error(), "DATABASE__MAX_OPEN_CONNS") {
		t.Errorf("storage sections are validated: %v", err)
	}
}

// Every duration is a variable named after its unit, and every variable
// named after a unit is a duration.
func TestDurationsNameTheirUnit(t *testing.T) {
	units := []string{"_MILLIS", "_SECONDS", "_MINUTES", "_HOURS", "_DAYS"}
	c := reflect.TypeOf(config.Config{})
	for i := range c.NumField() {
		sec := c.Field(i)
		if sec.Type.Kind() != reflect.Struct {
			continue
		}
		for j := range sec.Type.NumField() {
			f := sec.Type.Field(j)
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			named := slices.ContainsFunc(units, func(u string) bool { return strings.HasSuffix(name, u) })
			if isDuration := f.Type == reflect.TypeOf(time.Duration(0)); isDuration != named {
				t.Errorf("%s.%s (%s): duration %v, named after a unit %v", sec.Name, f.Name, name, isDuration, named)
			}
		}
	}
}

const (
	testKey1 = "key-one-0123456789-abcdefghijklmnop"   // 35 bytes
	testKey2 = "key-two-0123456789-abcdefghijklmnop==" // base64 padding
)

// The GRPC__ caller authentication variables: their defaults, their
// parsing and what each may be combined with.
func TestLoadCallerAuth(t *testing.T) {
	c, err := load(minimalEnv())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(transportDefaults(config.GRPC{ListenAddr: ":50051"}), c.GRPC); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if c.GRPC.CallerAuth() {
		t.Errorf("CallerAuth() with nothing configured")
	}

	dir := t.TempDir()
	cert, key, ca := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(t.TempDir(), "ca.crt")
	tests := []struct {
		name string
		set  map[string]string
		want config.GRPC
	}{
		{"TLS only", map[string]string{"GRPC__TLS_CERT_FILE": cert, "GRPC__TLS_KEY_FILE": key},
			config.GRPC{ListenAddr: ":50051", TLSCertFile: cert, TLSKeyFile: key}},
		{"mutual TLS, any client", map[string]string{"GRPC__TLS_CERT_FILE": cert, "GRPC__TLS_KEY_FILE": key, "GRPC__CLIENT_CA_FILE": ca},
			config.GRPC{ListenAddr: ":50051", TLSCertFile: cert, TLSKeyFile: key, ClientCAFile: ca}},
		{"mutual TLS, listed clients", map[string]string{"GRPC__TLS_CERT_FILE": cert, "GRPC__TLS_KEY_FILE": key, "GRPC__CLIENT_CA_FILE": ca,
			"GRPC__ALLOWED_CLIENTS":     " spiffe://placebrain/places=GetMe|GetUserByEmail , gateway.placebrain.internal,",
			"GRPC__REQUIRE_CALLER_AUTH": "true"},
			config.GRPC{ListenAddr: ":50051", TLSCertFile: cert, TLSKeyFile: key, ClientCAFile: ca, RequireCallerAuth: true,
				AllowedClients: config.Clients{
					{Caller: "spiffe://placebrain/places", Methods: []string{"GetMe", "GetUserByEmail"}},
					{Caller: "gateway.placebrain.internal"},
				}}},
		{"keys", map[string]string{"GRPC__API_KEYS": testKey1 + "=GetUserByEmail|GetMe|GetMe," + testKey2, "GRPC__REQUIRE_CALLER_AUTH": "true"},
			config.GRPC{ListenAddr: ":50051", RequireCallerAuth: true, APIKeys: config.Keys{
				{Caller: testKey1, Methods: []string{"GetUserByEmail", "GetMe"}},
				{Caller: testKey2},
			}}},
		{"padded key with methods", map[string]string{"GRPC__API_KEYS": testKey2 + "=Login"},
			config.GRPC{ListenAddr: ":50051", APIKeys: config.Keys{{Caller: testKey2, Methods: []string{"Login"}}}}},
		{"reflection", map[string]string{"GRPC__REFLECTION": "true"},
			config.GRPC{ListenAddr: ":50051", Reflection: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(envWith(tt.set))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(transportDefaults(tt.want), c.GRPC); diff != "" {
				t.Errorf("GRPC (-want +got):\n%s", diff)
			}
			if got, want := c.GRPC.CallerAuth(), tt.want.ClientCAFile != "" || len(tt.want.APIKeys) > 0; got != want {
				t.Errorf("CallerAuth() = %v, want %v", got, want)
			}
		})
	}
}

func TestLoadCallerAuthErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	pair := map[string]string{"GRPC__TLS_CERT_FILE": cert, "GRPC__TLS_KEY_FILE": key}
	mtls := map[string]string{"GRPC__CLIENT_CA_FILE": ca}
	maps.Copy(mtls, pair)
	with := func(base map[string]string, kv ...string) map[string]string {
		m := maps.Clone(base)
		if m == nil {
			m = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	shortKey := "short-key-0123456789"
	tests := []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"cert without key", with(nil, "GRPC__TLS_CERT_FILE", cert), []string{"GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE must be set together"}},
		{"key without cert", with(nil, "GRPC__TLS_KEY_FILE", key), []string{"GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE must be set together"}},
		{"pair in two directories", with(pair, "GRPC__TLS_KEY_FILE", filepath.Join(t.TempDir(), "tls.key")),
			[]string{"GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE must be in the same directory"}},
		{"client CA without the pair", with(nil, "GRPC__CLIENT_CA_FILE", ca), []string{"GRPC__CLIENT_CA_FILE needs GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE"}},
		{"allowed clients without a client CA", with(pair, "GRPC__ALLOWED_CLIENTS", "gateway"), []string{"GRPC__ALLOWED_CLIENTS needs GRPC__CLIENT_CA_FILE"}},
		{"required but nothing configured", with(nil, "GRPC__REQUIRE_CALLER_AUTH", "true"),
			[]string{"GRPC__REQUIRE_CALLER_AUTH", "GRPC__CLIENT_CA_FILE", "GRPC__API_KEYS"}},
		{"required with TLS alone", with(pair, "GRPC__REQUIRE_CALLER_AUTH", "true"),
			[]string{"GRPC__REQUIRE_CALLER_AUTH", "GRPC__CLIENT_CA_FILE", "GRPC__API_KEYS"}},
		{"bogus require", with(nil, "GRPC__REQUIRE_CALLER_AUTH", "yes"), []string{"GRPC__REQUIRE_CALLER_AUTH has an invalid value"}},
		{"bogus reflection", with(nil, "GRPC__REFLECTION", "on"), []string{"GRPC__REFLECTION has an invalid value"}},
		{"unknown client method", with(mtls, "GRPC__ALLOWED_CLIENTS", "spiffe://placebrain/places=GetMe|Fetch"),
			[]string{"GRPC__ALLOWED_CLIENTS", `"spiffe://placebrain/places"`, `unknown method "Fetch"`, "GetUserByEmail"}},
		{"client method in the wrong case", with(mtls, "GRPC__ALLOWED_CLIENTS", "places=getMe"),
			[]string{"GRPC__ALLOWED_CLIENTS", `unknown method "getMe"`}},
		{"client without methods after =", with(mtls, "GRPC__ALLOWED_CLIENTS", "places="),
			[]string{"GRPC__ALLOWED_CLIENTS", `"places": no methods after '='`}},
		{"client listed twice", with(mtls, "GRPC__ALLOWED_CLIENTS", "places,gateway=Login,places=GetMe"),
			[]string{"GRPC__ALLOWED_CLIENTS", `"places" is listed twice`}},
		{"empty client", with(mtls, "GRPC__ALLOWED_CLIENTS", "=GetMe"), []string{"GRPC__ALLOWED_CLIENTS", "entry 1: empty caller"}},
		{"short key", with(nil, "GRPC__API_KEYS", testKey1+","+shortKey), []string{"GRPC__API_KEYS: entry 2: a key must be at least 32 bytes"}},
		{"short key with methods", with(nil, "GRPC__API_KEYS", shortKey+"=GetMe"), []string{"GRPC__API_KEYS: entry 1: a key must be at least 32 bytes"}},
		{"unknown key method", with(nil, "GRPC__API_KEYS", testKey2+","+testKey1+"=GetMe|Fetch"),
			[]string{"GRPC__API_KEYS: entry 2", `unknown method "Fetch"`}},
		{"key with = inside", with(nil, "GRPC__API_KEYS", testKey1+"=x9/"+testKey2[:5]),
			[]string{"GRPC__API_KEYS: entry 1: unknown method (AuthService methods:"}},
		{"key listed twice", with(nil, "GRPC__API_KEYS", testKey1+","+testKey2+","+testKey1+"=GetMe"),
			[]string{"GRPC__API_KEYS: entry 3 repeats entry 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(envWith(tt.set))
			if err == nil {
				t.Fatalf("Load = %+v, want an error", c.GRPC)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, secret := range []string{testKey1, testKey2, shortKey, testKey2[:5]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals the key %q", err, secret)
				}
			}
		})
	}
}

// Printing the configuration does not print the API keys.
func TestKeysDoNotPrint(t *testing.T) {
	c, err := load(envWith(map[string]string{"GRPC__API_KEYS": testKey1 + "=GetMe," + testKey2}))
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(verb, c.GRPC)
		if strings.Contains(s, "key-one") || strings.Contains(s, "key-two") {
			t.Errorf("Sprintf(%s) = %s, reveals a key", verb, s)
		}
	}
	if got := c.GRPC.APIKeys.String(); got != "2 API keys" {
		t.Errorf("String() = %q", got)
	}
}
