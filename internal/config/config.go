// Package config reads the service's configuration from environment
// variables with go-envconfig. Nested sections use a `__` separator, so the
// database URL is DATABASE__URL and the JWT secret is JWT__SECRET. Every
// command reads its configuration through Load, which parses and validates
// only the sections that command uses.
package config

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
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
	// Dev is development mode (authd serve --dev), not an environment
	// variable: see Load.
	Dev bool

	GRPC     GRPC     `env:", prefix=GRPC__"`
	Log      Log      `env:", prefix=LOG__"`
	Debug    Debug    `env:", prefix=DEBUG__"`
	Metrics  Metrics  `env:", prefix=METRICS__"`
	Data     Data     `env:", prefix=DATA__"`
	Database Database `env:", prefix=DATABASE__"`
	JWT      JWT      `env:", prefix=JWT__"`
	OTP      OTP      `env:", prefix=OTP__"`
	Login    Login    `env:", prefix=LOGIN__"`
	Register Register `env:", prefix=REGISTER__"`
	Reset    Reset    `env:", prefix=RESET__"`
	Users    Users    `env:", prefix=USERS__"`
	Cleanup  Cleanup  `env:", prefix=CLEANUP__"`
	Audit    Audit    `env:", prefix=AUDIT__"`
	Password Password `env:", prefix=PASSWORD__"`
	SMTP     SMTP     `env:", prefix=SMTP__"`
	Outbox   Outbox   `env:", prefix=OUTBOX__"`
}

// GRPC configures the gRPC listener and who may call it. With neither
// ClientCAFile nor APIKeys any process that reaches the port may call
// every method (caller authentication off).
type GRPC struct {
	// ListenAddr is the gRPC listen address, host:port.
	ListenAddr string `env:"LISTEN_ADDR, default=:50051"`
	// TLSCertFile and TLSKeyFile are the server's certificate chain and
	// private key (PEM), both or neither, in one directory; they are
	// re-read when they change. Empty: plain text.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	// ClientCAFile holds the CA certificates (PEM) that client
	// certificates must chain to (mutual TLS); it needs the TLS pair and
	// is re-read when it changes.
	ClientCAFile string `env:"CLIENT_CA_FILE"`
	// AllowedClients are the client certificate identities (a DNS or URI
	// SAN) that may call, each optionally limited to some methods. Empty
	// with ClientCAFile: every certificate the CA signed, every method.
	AllowedClients Clients `env:"ALLOWED_CLIENTS"`
	// APIKeys are the service keys callers may present as
	// `authorization: Bearer KEY`, each optionally limited to some methods.
	APIKeys Keys `env:"API_KEYS"`
	// RequireCallerAuth refuses to start without ClientCAFile or APIKeys.
	RequireCallerAuth bool `env:"REQUIRE_CALLER_AUTH, default=false"`
	// Reflection registers gRPC server reflection (always in development
	// mode).
	Reflection bool `env:"REFLECTION, default=false"`
	// MaxConcurrentStreams is HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS:
	// the RPCs one connection may have open at once; a client queues the
	// ones beyond it.
	MaxConcurrentStreams uint32 `env:"MAX_CONCURRENT_STREAMS, default=1000"`
	// MaxStreamingRPCs caps the streaming RPCs (health Watch, reflection)
	// open at once over all connections; beyond it they are refused
	// RESOURCE_EXHAUSTED. It bounds what clients that never read can pin.
	MaxStreamingRPCs int `env:"MAX_STREAMING_RPCS, default=64"`
	// MaxConnections caps the open connections; more wait in the
	// listen backlog until one closes. 0: no cap.
	MaxConnections int `env:"MAX_CONNECTIONS, default=256"`
	// MaxConnectionsPerPeer caps the open connections from one IP
	// address; one more is closed as soon as it is accepted, so a single
	// peer cannot hold every MaxConnections slot. 0: no cap.
	MaxConnectionsPerPeer int `env:"MAX_CONNECTIONS_PER_PEER, default=64"`
	// KeepaliveMinTime is the shortest interval between a client's
	// keepalive pings that is tolerated; a client pinging more often is
	// sent GOAWAY (too_many_pings).
	KeepaliveMinTime time.Duration `env:"KEEPALIVE_MIN_TIME_SECONDS, default=10"`
	// MaxConnectionIdle closes a connection with no RPC for this long
	// (GOAWAY; the client reconnects on its next call). 0: never.
	MaxConnectionIdle time.Duration `env:"MAX_CONNECTION_IDLE_MINUTES, default=15"`
	// MaxConnectionAge closes a connection this old (±10 %, GOAWAY),
	// after MaxConnectionAgeGrace for the RPCs in flight. 0: never.
	MaxConnectionAge      time.Duration `env:"MAX_CONNECTION_AGE_MINUTES, default=30"`
	MaxConnectionAgeGrace time.Duration `env:"MAX_CONNECTION_AGE_GRACE_SECONDS, default=30"`
	// HandshakeTimeout bounds a new connection's TLS and HTTP/2 handshake.
	HandshakeTimeout time.Duration `env:"HANDSHAKE_TIMEOUT_SECONDS, default=10"`
}

// CallerAuth reports whether callers must authenticate: with a client
// certificate (ClientCAFile) or an API key.
func (g GRPC) CallerAuth() bool { return g.ClientCAFile != "" || len(g.APIKeys) > 0 }

// Log configures the JSON log on stderr.
type Log struct {
	// Level is debug, info, warn or error (as log/slog reads it).
	Level slog.Level `env:"LEVEL, default=info"`
	// Requests is the request log: RequestsOff (the default), or the
	// level of one line per RPC, RequestsDebug or RequestsInfo.
	Requests string `env:"REQUESTS, default=off"`
}

// The values of LOG__REQUESTS.
const (
	// RequestsOff writes no request log and leaves x-request-id alone:
	// nothing is added to any RPC's path. The default, since the gateway
	// sends a ValidateToken for each of its own requests, and metrics and
	// traces already answer the questions of volume and latency.
	RequestsOff = "off"
	// RequestsDebug writes the request log at debug level (seen with
	// LOG__LEVEL=debug).
	RequestsDebug = "debug"
	// RequestsInfo writes the request log at info level.
	RequestsInfo = "info"
)

// RequestLevel returns the level of the request log's lines; ok is false
// when the request log is off.
func (l Log) RequestLevel() (level slog.Level, ok bool) {
	switch l.Requests {
	case RequestsDebug:
		return slog.LevelDebug, true
	case RequestsInfo:
		return slog.LevelInfo, true
	}
	return 0, false
}

// Debug configures developer aids.
type Debug struct {
	// PprofAddr, when set (e.g. 127.0.0.1:6060), serves net/http/pprof
	// there for profiling; keep it on loopback.
	PprofAddr string `env:"PPROF_ADDR"`
}

// Metrics configures the Prometheus metrics listener.
type Metrics struct {
	// Addr, when set (e.g. :9090), serves the metrics in the Prometheus
	// text format at /metrics on this address, a listener of its own
	// apart from gRPC's. Empty: no metrics are kept.
	Addr string `env:"ADDR"`
}

// Data configures the data directory.
type Data struct {
	// Dir holds the embedded SQLite database (when DATABASE__URL is
	// unset) and, in development mode, the generated JWT secret.
	Dir string `env:"DIR, default=./data"`
}

// Database configures the database connection and migrations.
type Database struct {
	// URL is a postgres://, postgresql:// or postgresql+asyncpg:// URL, or
	// sqlite:PATH; empty means the embedded SQLite file in DATA__DIR.
	URL string `env:"URL"`
	// AutoMigrate applies pending migrations at start; false leaves them to
	// DBAs (`authd migrate apply` or the Atlas CLI).
	AutoMigrate bool `env:"AUTO_MIGRATE, default=true"`
	// MaxOpenConns caps open connections to the database.
	MaxOpenConns int `env:"MAX_OPEN_CONNS, default=20"`
	// MaxIdleConns is how many idle connections are kept open for reuse.
	MaxIdleConns int `env:"MAX_IDLE_CONNS, default=20"`
	// ConnMaxLifetime closes connections older than this.
	ConnMaxLifetime time.Duration `env:"CONN_MAX_LIFETIME_MINUTES, default=30"`
	// ConnectTimeout bounds the making of a PostgreSQL connection (dial,
	// TLS, start-up); 0: no bound.
	ConnectTimeout time.Duration `env:"CONNECT_TIMEOUT_SECONDS, default=5"`
	// StatementTimeout is PostgreSQL's statement_timeout on the service's
	// connections; a unit of work or query is also cut on the client side
	// after ConnectTimeout + StatementTimeout + 1 s. 0: no bound.
	StatementTimeout time.Duration `env:"STATEMENT_TIMEOUT_SECONDS, default=5"`
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
	// RefreshReuseGrace is how long a rotated refresh token is still
	// accepted (concurrent tabs, a lost response).
	RefreshReuseGrace time.Duration `env:"REFRESH_REUSE_GRACE_SECONDS, default=10"`
	// ValidationCacheSize is how many verified access tokens ValidateToken
	// remembers until they expire (0: none).
	ValidationCacheSize int `env:"VALIDATION_CACHE_SIZE, default=10000"`
	// Leeway is the clock skew ValidateToken allows on exp and iat.
	Leeway time.Duration `env:"LEEWAY_SECONDS, default=0"`
	// Issuer is the access token's `iss` claim.
	Issuer string `env:"ISSUER, default=placebrain-auth"`
	// AccessTokenTTL is the access token lifetime.
	AccessTokenTTL time.Duration `env:"ACCESS_TOKEN_EXPIRE_MINUTES, default=15"`
	// RefreshTokenTTL is the refresh token lifetime.
	RefreshTokenTTL time.Duration `env:"REFRESH_TOKEN_EXPIRE_DAYS, default=30"`
	// RefreshRecovery is how long after a rotation a replay of the rotated
	// token still gets its child when the child is unused (a client that
	// lost the response); the access token's lifetime by default.
	RefreshRecovery time.Duration `env:"REFRESH_RECOVERY_MINUTES, default=15"`
	// SessionMax bounds a session (token family) from its login (0: no
	// bound).
	SessionMax time.Duration `env:"SESSION_MAX_DAYS, default=90"`
	// RevokedRetention is how long a revoked family is kept (its tokens
	// answer REFRESH_TOKEN_REVOKED meanwhile).
	RevokedRetention time.Duration `env:"REVOKED_RETENTION_DAYS, default=7"`
}

// OTP configures e-mail verification codes.
type OTP struct {
	// Secret keys the HMAC that stores codes, and the key that seals
	// queued e-mails is derived from it; when empty both are derived from
	// JWT__SECRET (HKDF-SHA256), so rotating that secret also voids
	// outstanding codes and fails queued e-mails.
	Secret string `env:"SECRET"`
	// TTL is how long a code is valid.
	TTL time.Duration `env:"EXPIRE_MINUTES, default=10"`
	// MaxAttempts is how many verification attempts one code allows.
	MaxAttempts int `env:"MAX_ATTEMPTS, default=5"`
	// ResendCooldown is the least time between two codes.
	ResendCooldown time.Duration `env:"RESEND_COOLDOWN_SECONDS, default=60"`
	// DailyLimit caps the codes one source can have sent to one address
	// in 24 hours, or one address when sources are unknown (0: no cap).
	DailyLimit int `env:"DAILY_LIMIT, default=10"`
	// AccountDailyLimit caps the codes mailed to one address in 24 hours,
	// whatever the sources (0: no cap).
	AccountDailyLimit int `env:"ACCOUNT_DAILY_LIMIT, default=20"`
	// AccountDailyFailures caps the codes checked against one account in
	// 24 hours, whatever the sources (0: no cap).
	AccountDailyFailures int `env:"ACCOUNT_DAILY_FAILURES, default=50"`
}

// Login configures login limits: MaxFailures failed logins for one
// (address, source) pair, or one address when sources are unknown, within
// Window lock the pair for Lockout; an address's attempts from sources
// that have not signed in to it are capped per day and slowed.
type Login struct {
	MaxFailures int           `env:"MAX_FAILURES, default=10"`
	Window      time.Duration `env:"WINDOW_MINUTES, default=15"`
	Lockout     time.Duration `env:"LOCKOUT_MINUTES, default=15"`
	// AccountDailyFailures caps an address's attempts from untrusted
	// sources in 24 hours (0: no cap).
	AccountDailyFailures int `env:"ACCOUNT_DAILY_FAILURES, default=100"`
	// AccountDelay is how long an attempt from an untrusted source waits
	// once the address has had MaxFailures of them in the day.
	AccountDelay time.Duration `env:"ACCOUNT_DELAY_SECONDS, default=2"`
	// TrustedSource is how long a source an account signed in from stays
	// trusted (not slowed, not capped per account).
	TrustedSource time.Duration `env:"TRUSTED_SOURCE_DAYS, default=90"`
}

// Reset configures password-reset codes, which give an account away and
// so allow fewer guesses than sign-up codes; their lifetime, cooldown and
// daily limit per source are OTP__'s.
type Reset struct {
	// MaxAttempts is how many attempts one reset code allows from one
	// source.
	MaxAttempts int `env:"MAX_ATTEMPTS, default=3"`
	// AccountDailyFailures caps the reset codes checked against one
	// account in 24 hours, whatever the sources (0: no cap).
	AccountDailyFailures int `env:"ACCOUNT_DAILY_FAILURES, default=10"`
}

// Register configures registration limits.
type Register struct {
	// MaxPerSource registrations from one source within Window (0: no
	// limit); without sources, none is counted.
	MaxPerSource int           `env:"MAX_PER_SOURCE, default=10"`
	Window       time.Duration `env:"WINDOW_MINUTES, default=60"`
}

// Users configures accounts.
type Users struct {
	// UnverifiedTTL is how long after its latest sign-up claim an
	// unverified account is kept.
	UnverifiedTTL time.Duration `env:"UNVERIFIED_TTL_HOURS, default=72"`
}

// Cleanup configures the periodic retention cleanup.
type Cleanup struct {
	// Interval is how often it runs (and it runs at start).
	Interval time.Duration `env:"INTERVAL_MINUTES, default=60"`
	// BatchSize is how many rows one statement deletes.
	BatchSize int `env:"BATCH_SIZE, default=1000"`
}

// Audit configures the security audit log.
type Audit struct {
	// Retention is how long audit events are kept (0: forever).
	Retention time.Duration `env:"RETENTION_DAYS, default=90"`
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
	// Required with Host; without both, DevFrom.
	From string `env:"FROM"`
	// TLS is none (plain text), starttls (required) or tls (implicit
	// TLS, usually port 465).
	TLS string `env:"TLS, default=starttls"`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `env:"TIMEOUT_SECONDS, default=15"`
}

// DevFrom is the sender of e-mails written to the log when no relay is
// configured (development mode).
const DevFrom = "PlaceBrain <no-reply@localhost>"

// Outbox configures the e-mail outbox dispatcher.
type Outbox struct {
	// PollInterval is how often the dispatcher looks for due messages
	// when nothing woke it.
	PollInterval time.Duration `env:"POLL_INTERVAL_MILLIS, default=1000"`
	// MaxAttempts is how many delivery attempts a message gets before it
	// is marked failed.
	MaxAttempts int `env:"MAX_ATTEMPTS, default=8"`
	// RetryBase is the first retry delay; it doubles per attempt.
	RetryBase time.Duration `env:"RETRY_BASE_SECONDS, default=5"`
	// RetryMax caps the retry delay.
	RetryMax time.Duration `env:"RETRY_MAX_SECONDS, default=600"`
	// Retention is how long sent and failed messages are kept (they hold
	// the recipient's address).
	Retention time.Duration `env:"RETENTION_DAYS, default=7"`
}

// DevSecretFile is the file in the data directory that keeps the JWT secret
// generated in development mode.
const DevSecretFile = "dev-jwt-secret"

// Section names a part of the configuration: one variable prefix.
type Section string

// The sections, named by their variable prefixes.
const (
	SectionGRPC     Section = "GRPC"
	SectionLog      Section = "LOG"
	SectionDebug    Section = "DEBUG"
	SectionMetrics  Section = "METRICS"
	SectionData     Section = "DATA"
	SectionDatabase Section = "DATABASE"
	SectionJWT      Section = "JWT"
	SectionOTP      Section = "OTP"
	SectionLogin    Section = "LOGIN"
	SectionRegister Section = "REGISTER"
	SectionReset    Section = "RESET"
	SectionUsers    Section = "USERS"
	SectionCleanup  Section = "CLEANUP"
	SectionAudit    Section = "AUDIT"
	SectionPassword Section = "PASSWORD"
	SectionSMTP     Section = "SMTP"
	SectionOutbox   Section = "OUTBOX"
)

// Serve is every section: what `authd serve` reads.
var Serve = []Section{SectionGRPC, SectionLog, SectionDebug, SectionMetrics, SectionData, SectionDatabase, SectionJWT,
	SectionOTP, SectionLogin, SectionRegister, SectionReset, SectionUsers, SectionCleanup, SectionAudit, SectionPassword, SectionSMTP, SectionOutbox}

// Storage is what a command that only opens the database reads
// (`authd migrate`): DATA__DIR and DATABASE__*.
var Storage = []Section{SectionData, SectionDatabase}

// Options say what Load reads.
type Options struct {
	// Dev is development mode: see Load.
	Dev bool
	// Sections are the sections the command uses; only they are read and
	// validated. Empty means Serve.
	Sections []Section
}

// Load reads the configuration from l (the process environment when nil)
// and validates it. Only the sections in o.Sections are read and checked;
// the others keep their zero values. Errors name the offending variable
// and never echo a value.
//
// A variable whose name ends in _MILLIS, _SECONDS, _MINUTES, _HOURS or
// _DAYS holds a whole number in that unit and is handed out as a
// time.Duration.
//
// In development mode (o.Dev) JWT__SECRET may be unset: a secret is
// generated once and kept in DATA__DIR/dev-jwt-secret (mode 0600), so
// tokens survive restarts; and SMTP__HOST may be unset (e-mails then go to
// the log, from DevFrom). Outside development mode both are required.
func Load(ctx context.Context, l envconfig.Lookuper, o Options) (*Config, error) {
	if l == nil {
		l = envconfig.OsLookuper()
	}
	sections := o.Sections
	if len(sections) == 0 {
		sections = Serve
	}
	c := Config{Dev: o.Dev}
	use := map[Section]bool{}
	for _, s := range sections {
		target := c.section(s)
		if target == nil {
			return nil, fmt.Errorf("config: unknown section %q", s)
		}
		use[s] = true
		prefix := string(s) + "__"
		rec := &recordingLookuper{next: envconfig.PrefixLookuper(prefix, l), prefix: prefix}
		err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: rec, Mutators: []envconfig.Mutator{durations}})
		var ue unitError
		var ve valueError
		switch {
		case err == nil:
		case rec.last == "":
			return nil, fmt.Errorf("config: %w", err)
		case errors.As(err, &ue):
			return nil, fmt.Errorf("config: %s must be %s", rec.last, ue)
		case errors.As(err, &ve):
			// The decoder's own words, which never echo a secret.
			return nil, fmt.Errorf("config: %s: %s", rec.last, ve)
		default:
			// A value that does not parse: name the variable, not the Go
			// field, and do not echo the value.
			return nil, fmt.Errorf("config: %s has an invalid value", rec.last)
		}
	}
	if err := c.required(use); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if use[SectionJWT] && o.Dev && c.JWT.Secret == "" {
		secret, err := devSecret(c.Data.Dir)
		if err != nil {
			return nil, fmt.Errorf("config: development JWT secret: %w", err)
		}
		c.JWT.Secret = secret
	}
	if use[SectionSMTP] && c.SMTP.Host == "" && c.SMTP.From == "" {
		c.SMTP.From = DevFrom
	}
	if err := c.validate(use); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

// section returns the struct that holds s.
func (c *Config) section(s Section) any {
	switch s {
	case SectionGRPC:
		return &c.GRPC
	case SectionLog:
		return &c.Log
	case SectionDebug:
		return &c.Debug
	case SectionMetrics:
		return &c.Metrics
	case SectionData:
		return &c.Data
	case SectionDatabase:
		return &c.Database
	case SectionJWT:
		return &c.JWT
	case SectionOTP:
		return &c.OTP
	case SectionLogin:
		return &c.Login
	case SectionRegister:
		return &c.Register
	case SectionReset:
		return &c.Reset
	case SectionUsers:
		return &c.Users
	case SectionCleanup:
		return &c.Cleanup
	case SectionAudit:
		return &c.Audit
	case SectionPassword:
		return &c.Password
	case SectionSMTP:
		return &c.SMTP
	case SectionOutbox:
		return &c.Outbox
	}
	return nil
}

// units maps a variable name's unit suffix to the unit.
var units = []struct {
	suffix string
	unit   time.Duration
}{
	{"_MILLIS", time.Millisecond},
	{"_SECONDS", time.Second},
	{"_MINUTES", time.Minute},
	{"_HOURS", time.Hour},
	{"_DAYS", 24 * time.Hour},
}

// unitError says which whole number a variable named after a unit needs.
type unitError string

func (e unitError) Error() string { return string(e) }

// durations turns the whole number of a variable named after its unit into
// a duration go-envconfig parses (nanoseconds, "123ns"), so such fields are
// time.Duration and the variable keeps the format operators already use.
var durations = envconfig.MutatorFunc(func(_ context.Context, key, _, _, value string) (string, bool, error) {
	for _, u := range units {
		if !strings.HasSuffix(key, u.suffix) {
			continue
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if limit := int64(math.MaxInt64) / int64(u.unit); err != nil || n > limit || n < -limit {
			return "", true, unitError("a whole number of " + strings.ToLower(strings.TrimPrefix(u.suffix, "_")))
		}
		return strconv.FormatInt(n*int64(u.unit), 10) + "ns", false, nil
	}
	return value, false, nil
})

// required reports values that are required outside development mode, and
// SMTP__FROM whenever SMTP__HOST is set.
func (c *Config) required(use map[Section]bool) error {
	var missing []string
	if use[SectionJWT] && !c.Dev && c.JWT.Secret == "" {
		missing = append(missing, "JWT__SECRET")
	}
	if use[SectionSMTP] && !c.Dev && c.SMTP.Host == "" {
		missing = append(missing, "SMTP__HOST")
	}
	if use[SectionSMTP] && c.SMTP.Host != "" && c.SMTP.From == "" {
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
	next   envconfig.Lookuper
	prefix string
	last   string
}

func (r *recordingLookuper) Lookup(key string) (string, bool) {
	v, ok := r.next.Lookup(key)
	if ok {
		r.last = r.prefix + key
	}
	return v, ok
}

// rule is one validation: ok, or msg names the variable and what is wrong.
type rule struct {
	ok  bool
	msg string
}

// rules returns the validation rules of section s.
func (c *Config) rules(s Section) []rule {
	switch s {
	case SectionGRPC:
		g := c.GRPC
		return []rule{
			{(g.TLSCertFile == "") == (g.TLSKeyFile == ""), "GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE must be set together"},
			{g.MaxConcurrentStreams > 0, "GRPC__MAX_CONCURRENT_STREAMS must be positive"},
			{g.MaxStreamingRPCs > 0, "GRPC__MAX_STREAMING_RPCS must be positive"},
			{g.MaxConnections >= 0, "GRPC__MAX_CONNECTIONS must not be negative"},
			{g.MaxConnectionsPerPeer >= 0, "GRPC__MAX_CONNECTIONS_PER_PEER must not be negative"},
			{g.KeepaliveMinTime >= 0, "GRPC__KEEPALIVE_MIN_TIME_SECONDS must not be negative"},
			{g.MaxConnectionIdle >= 0 && g.MaxConnectionAge >= 0 && g.MaxConnectionAgeGrace >= 0,
				"GRPC__MAX_CONNECTION_IDLE_MINUTES, GRPC__MAX_CONNECTION_AGE_MINUTES and GRPC__MAX_CONNECTION_AGE_GRACE_SECONDS must not be negative"},
			{g.HandshakeTimeout > 0, "GRPC__HANDSHAKE_TIMEOUT_SECONDS must be positive"},
			// grpc-go's pemfile provider re-reads the pair together and
			// requires one directory.
			{g.TLSCertFile == "" || g.TLSKeyFile == "" || filepath.Dir(g.TLSCertFile) == filepath.Dir(g.TLSKeyFile),
				"GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE must be in the same directory"},
			{g.ClientCAFile == "" || (g.TLSCertFile != "" && g.TLSKeyFile != ""), "GRPC__CLIENT_CA_FILE needs GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE"},
			{len(g.AllowedClients) == 0 || g.ClientCAFile != "", "GRPC__ALLOWED_CLIENTS needs GRPC__CLIENT_CA_FILE"},
			{!g.RequireCallerAuth || g.CallerAuth(), "GRPC__REQUIRE_CALLER_AUTH=true needs GRPC__CLIENT_CA_FILE (mutual TLS) or GRPC__API_KEYS"},
		}
	case SectionLog:
		_, on := c.Log.RequestLevel()
		return []rule{{on || c.Log.Requests == RequestsOff, "LOG__REQUESTS must be off, debug or info"}}
	case SectionData:
		return []rule{{c.Data.Dir != "", "DATA__DIR must not be empty"}}
	case SectionDatabase:
		return []rule{
			{c.Database.MaxOpenConns > 0, "DATABASE__MAX_OPEN_CONNS must be positive"},
			{c.Database.MaxIdleConns >= 0, "DATABASE__MAX_IDLE_CONNS must not be negative"},
			{c.Database.ConnMaxLifetime >= 0, "DATABASE__CONN_MAX_LIFETIME_MINUTES must not be negative"},
			{c.Database.ConnectTimeout >= 0, "DATABASE__CONNECT_TIMEOUT_SECONDS must not be negative"},
			{c.Database.StatementTimeout >= 0, "DATABASE__STATEMENT_TIMEOUT_SECONDS must not be negative"},
		}
	case SectionJWT:
		return []rule{
			{len(c.JWT.Secret) >= MinJWTSecretBytes, fmt.Sprintf("JWT__SECRET must be at least %d bytes", MinJWTSecretBytes)},
			{c.JWT.AccessTokenTTL > 0, "JWT__ACCESS_TOKEN_EXPIRE_MINUTES must be positive"},
			{previousOK(c.JWT.PreviousSecrets), fmt.Sprintf("every JWT__PREVIOUS_SECRETS entry must be at least %d bytes", MinJWTSecretBytes)},
			{c.JWT.Leeway >= 0, "JWT__LEEWAY_SECONDS must not be negative"},
			{c.JWT.ValidationCacheSize >= 0, "JWT__VALIDATION_CACHE_SIZE must not be negative"},
			{c.JWT.RefreshReuseGrace >= 0, "JWT__REFRESH_REUSE_GRACE_SECONDS must not be negative"},
			{c.JWT.RefreshTokenTTL > 0, "JWT__REFRESH_TOKEN_EXPIRE_DAYS must be positive"},
			{c.JWT.RefreshRecovery >= 0, "JWT__REFRESH_RECOVERY_MINUTES must not be negative"},
			{c.JWT.SessionMax >= 0, "JWT__SESSION_MAX_DAYS must not be negative"},
			{c.JWT.RevokedRetention >= 0, "JWT__REVOKED_RETENTION_DAYS must not be negative"},
		}
	case SectionOTP:
		return []rule{
			{c.OTP.Secret == "" || len(c.OTP.Secret) >= 32, "OTP__SECRET must be empty or at least 32 bytes"},
			{c.OTP.TTL > 0, "OTP__EXPIRE_MINUTES must be positive"},
			{c.OTP.MaxAttempts > 0, "OTP__MAX_ATTEMPTS must be positive"},
			{c.OTP.ResendCooldown >= 0, "OTP__RESEND_COOLDOWN_SECONDS must not be negative"},
			{c.OTP.DailyLimit >= 0, "OTP__DAILY_LIMIT must not be negative"},
			{c.OTP.AccountDailyLimit >= 0, "OTP__ACCOUNT_DAILY_LIMIT must not be negative"},
			{c.OTP.AccountDailyFailures >= 0, "OTP__ACCOUNT_DAILY_FAILURES must not be negative"},
		}
	case SectionLogin:
		return []rule{
			{c.Login.MaxFailures >= 0, "LOGIN__MAX_FAILURES must not be negative"},
			{c.Login.MaxFailures == 0 || (c.Login.Window > 0 && c.Login.Lockout > 0), "LOGIN__WINDOW_MINUTES and LOGIN__LOCKOUT_MINUTES must be positive"},
			{c.Login.AccountDailyFailures >= 0, "LOGIN__ACCOUNT_DAILY_FAILURES must not be negative"},
			{c.Login.AccountDelay >= 0, "LOGIN__ACCOUNT_DELAY_SECONDS must not be negative"},
			{c.Login.TrustedSource >= 0, "LOGIN__TRUSTED_SOURCE_DAYS must not be negative"},
		}
	case SectionUsers:
		return []rule{{c.Users.UnverifiedTTL > 0, "USERS__UNVERIFIED_TTL_HOURS must be positive"}}
	case SectionCleanup:
		return []rule{
			{c.Cleanup.Interval > 0, "CLEANUP__INTERVAL_MINUTES must be positive"},
			{c.Cleanup.BatchSize > 0, "CLEANUP__BATCH_SIZE must be positive"},
		}
	case SectionReset:
		return []rule{
			{c.Reset.MaxAttempts > 0, "RESET__MAX_ATTEMPTS must be positive"},
			{c.Reset.AccountDailyFailures >= 0, "RESET__ACCOUNT_DAILY_FAILURES must not be negative"},
		}
	case SectionRegister:
		return []rule{
			{c.Register.MaxPerSource >= 0, "REGISTER__MAX_PER_SOURCE must not be negative"},
			{c.Register.MaxPerSource == 0 || c.Register.Window > 0, "REGISTER__WINDOW_MINUTES must be positive"},
		}
	case SectionAudit:
		return []rule{{c.Audit.Retention >= 0, "AUDIT__RETENTION_DAYS must not be negative"}}
	case SectionPassword:
		return []rule{
			{c.Password.BcryptCost >= 4 && c.Password.BcryptCost <= 31, "PASSWORD__BCRYPT_COST must be between 4 and 31"},
			{c.Password.HashWorkers >= 0 && c.Password.HashQueue >= 0, "PASSWORD__HASH_WORKERS and PASSWORD__HASH_QUEUE must not be negative"},
		}
	case SectionSMTP:
		return []rule{
			{c.SMTP.Port > 0 && c.SMTP.Port < 65536, "SMTP__PORT must be a TCP port"},
			{c.SMTP.TLS == "none" || c.SMTP.TLS == "starttls" || c.SMTP.TLS == "tls", "SMTP__TLS must be none, starttls or tls"},
			{validFrom(c.SMTP.From), "SMTP__FROM must be an address such as `PlaceBrain <no-reply@example.com>`"},
			{c.SMTP.Timeout > 0, "SMTP__TIMEOUT_SECONDS must be positive"},
		}
	case SectionOutbox:
		return []rule{
			{c.Outbox.PollInterval > 0, "OUTBOX__POLL_INTERVAL_MILLIS must be positive"},
			{c.Outbox.MaxAttempts > 0, "OUTBOX__MAX_ATTEMPTS must be positive"},
			{c.Outbox.RetryBase > 0 && c.Outbox.RetryMax >= c.Outbox.RetryBase, "OUTBOX__RETRY_BASE_SECONDS must be positive and at most OUTBOX__RETRY_MAX_SECONDS"},
			{c.Outbox.Retention > 0, "OUTBOX__RETENTION_DAYS must be positive"},
		}
	}
	return nil
}

// validate checks the rules of the used sections and reports every broken
// one.
func (c *Config) validate(use map[Section]bool) error {
	var msgs []string
	for _, s := range Serve {
		if !use[s] {
			continue
		}
		for _, r := range c.rules(s) {
			if !r.ok {
				msgs = append(msgs, r.msg)
			}
		}
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
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
