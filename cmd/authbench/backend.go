package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/ent"
	"github.com/placebrain/auth/internal/store"
	"github.com/placebrain/auth/internal/token"
	"github.com/placebrain/auth/proto/authpb"
)

const (
	benchSecret   = "authbench-secret-0123456789-abcdefghijkl"
	benchPassword = "bench password 123"
	benchUsers    = 512
)

// backendResult is everything measured on one backend.
type backendResult struct {
	Name     string
	Location string
	Results  []result
	// Ceiling holds, per ceiling name and concurrency, the ceilings the
	// scenarios were measured against (CeilingsOf says which).
	Ceiling map[string]map[int]result
	// CeilingsOf names each scenario's ceilings, in the order measured.
	CeilingsOf map[string][]string
	Idle       map[string]result
	Loaded     map[string]result
	LoadedBy   result
	PeakRSS    int64 // bytes, VmHWM of the authd process
	// DBCPU says whether the results hold PostgreSQL's CPU time: the
	// server runs on this machine.
	DBCPU bool
}

// server is a running authd with clients and prepared data.
type server struct {
	url     string
	cmd     *exec.Cmd
	conns   []*grpc.ClientConn
	clients []authpb.AuthServiceClient
	health  []healthpb.HealthClient
	db      *store.DB
	users   []benchUser
	issuer  *token.Issuer
	refresh []atomic.Pointer[string] // per worker: the next unused refresh token
	raw     []atomic.Pointer[string] // per worker: the same for ceiling (c)
	rawOne  []atomic.Pointer[string] // per worker: the same for ceiling (d)
	regSeq  atomic.Int64

	rotatorOnce sync.Once // opens rotator on the first (c) call
	rotator     rotator
	rotatorErr  error
}

type benchUser struct {
	ID     uuid.UUID
	Email  string
	Access string
}

func (s *server) client(w int) authpb.AuthServiceClient { return s.clients[w%len(s.clients)] }

func benchBackend(ctx context.Context, o options, name string, bcryptTime time.Duration) (*backendResult, error) {
	dbURL, cleanup, err := freshDatabase(ctx, o, name)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	s, err := startServer(ctx, o.authd, dbURL, o.extraEnv)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	maxConc := 0
	for _, c := range o.conc {
		maxConc = max(maxConc, c)
	}
	if err := s.prepare(ctx, maxConc); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	dbMeter = func() time.Duration { return 0 }
	sysMeter = s.syscalls
	localPG := s.db.Dialect == dialect.Postgres && postgresCPU() > 0
	if localPG {
		dbMeter = postgresCPU
	}
	br := &backendResult{Name: name, Location: s.db.Location, DBCPU: localPG, Ceiling: map[string]map[int]result{},
		CeilingsOf: map[string][]string{}, Idle: map[string]result{}, Loaded: map[string]result{}}
	scen := s.scenarios()
	for _, c := range o.conc {
		if err := s.resetRefresh(ctx, c); err != nil {
			return nil, err
		}
		for _, sc := range scen {
			if o.only != "" && !strings.Contains(sc.name, o.only) {
				continue
			}
			d := o.duration
			if sc.hashing {
				// A bcrypt call takes ~0.3 s, and refused callers wait
				// out their RetryInfo: a longer window keeps the edges
				// from skewing the rate.
				d = max(d, 8*time.Second)
			}
			ceils := sc.ceilings
			if len(ceils) == 0 {
				r := drive(ctx, sc.name, c, d, sc.fn, s.cpuTime)
				logResult(name, r)
				br.Results = append(br.Results, r)
				continue
			}
			// The scenario and its ceilings take turns, so all see the
			// same machine.
			calls := []call{sc.fn}
			for _, cl := range ceils {
				calls = append(calls, cl.fn)
			}
			ts := alternate(ctx, c, 2*d, 4, calls, s.cpuTime)
			br.CeilingsOf[sc.name] = nil
			for i, cl := range ceils {
				ceil := ts[i+1].result(cl.name, c)
				logResult(name, ceil)
				if br.Ceiling[cl.name] == nil {
					br.Ceiling[cl.name] = map[int]result{}
				}
				br.Ceiling[cl.name][c] = ceil
				br.CeilingsOf[sc.name] = append(br.CeilingsOf[sc.name], cl.name)
			}
			r := ts[0].result(sc.name, c)
			logResult(name, r)
			br.Results = append(br.Results, r)
		}
	}
	if o.only != "" && o.only != onlyLoaded {
		return br, nil
	}
	// Cheap RPCs while Login saturates the hashing pool.
	for _, sc := range scen[:2] {
		br.Idle[sc.name] = drive(ctx, sc.name, 8, o.duration, sc.fn, s.cpuTime)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loaded := make(chan result, 1)
	go func() { loaded <- drive(loadCtx, "Login", 64, 4*o.duration, scen[3].fn, nil) }()
	time.Sleep(o.duration / 4)
	for _, sc := range scen[:2] {
		br.Loaded[sc.name] = drive(ctx, sc.name, 8, o.duration, sc.fn, s.cpuTime)
		logResult(name+" (under Login load)", br.Loaded[sc.name])
	}
	stopLoad()
	br.LoadedBy = <-loaded
	br.PeakRSS = s.peakRSS()
	return br, nil
}

func logResult(backend string, r result) {
	fmt.Fprintf(os.Stderr, "%-8s %-22s c=%-3d %8.0f rps  p50 %-9v p99 %-9v CPU/call authd %-7v client %-7v postgres %-7v syscalls %.1f errors %d %s\n",
		backend, r.Scenario, r.Conc, r.RPS, r.P50, r.P99, r.ServerCPU.Round(time.Microsecond), r.ClientCPU.Round(time.Microsecond), r.DBCPU.Round(time.Microsecond), r.Syscalls, r.Errors, r.ErrSample)
}

// freshDatabase returns a DATABASE__URL for a new database and a function
// that removes it.
func freshDatabase(ctx context.Context, o options, backend string) (string, func(), error) {
	switch backend {
	case "sqlite":
		dir, err := os.MkdirTemp("", "authbench")
		if err != nil {
			return "", nil, err
		}
		return "sqlite:" + filepath.Join(dir, "authd.db"), func() { os.RemoveAll(dir) }, nil
	case "postgres":
		admin, err := sql.Open("pgx", o.pgURL)
		if err != nil {
			return "", nil, err
		}
		name := "authbench_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			admin.Close()
			return "", nil, fmt.Errorf("PostgreSQL at -pg: %w", err)
		}
		u, _ := url.Parse(o.pgURL)
		u.Path = "/" + name
		return u.String(), func() {
			admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			admin.Close()
		}, nil
	}
	return "", nil, fmt.Errorf("unknown backend %q", backend)
}

// startServer starts authd with its default configuration (development
// mode only so e-mails go to the log, which LOG__LEVEL=error silences) and
// waits until health says SERVING.
func startServer(ctx context.Context, bin, dbURL string, extraEnv []string) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	dataDir, err := os.MkdirTemp("", "authbench-data")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--dev")
	cmd.Env = append(os.Environ(), "DATABASE__URL="+dbURL, "JWT__SECRET="+benchSecret, "GRPC__LISTEN_ADDR="+addr,
		"LOG__LEVEL=error", "DATA__DIR="+dataDir, "SMTP__HOST=")
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, url: dbURL}
	for range 4 {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			s.stop()
			return nil, err
		}
		s.conns = append(s.conns, conn)
		s.clients = append(s.clients, authpb.NewAuthServiceClient(conn))
		s.health = append(s.health, healthpb.NewHealthClient(conn))
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := s.health[0].Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("authd not SERVING after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s.db, err = store.Open(ctx, store.Config{URL: dbURL, Pool: store.PoolConfig{MaxOpenConns: 20, MaxIdleConns: 20}}); err != nil {
		s.stop()
		return nil, err
	}
	if s.issuer, err = token.NewIssuer([]byte(benchSecret), "placebrain-auth", 15*time.Minute, nil); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// dsn is the PostgreSQL connection string pgx opens.
func (s *server) dsn() string {
	d, _ := store.NormalizeURL(s.url)
	return d
}

func (s *server) stop() {
	for _, c := range s.conns {
		c.Close()
	}
	if s.rotator.pool != nil {
		s.rotator.pool.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
		}
	}
}

// cpuTime reads the authd process's CPU time so far, user and system, all
// threads.
func (s *server) cpuTime() time.Duration { return procCPU(s.cmd.Process.Pid) }

// syscalls reads the authd process's read and write system calls so far
// (/proc/PID/io syscr + syscw).
func (s *server) syscalls() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseInt(v, 10, 64)
			n += x
		}
	}
	return n
}

// procCPU reads a process's CPU time so far, user and system, all threads
// (/proc/PID/stat utime and stime, in clock ticks of 10 ms); 0 if it is
// gone.
func procCPU(pid int) time.Duration { return procStat(pid, false) }

// procStat reads /proc/PID/stat's utime and stime and, with children, also
// cutime and cstime: the CPU time of its children that have exited and
// been waited for.
func procStat(pid int, children bool) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	fields := f[11:13]
	if children && len(f) >= 15 {
		fields = f[11:15]
	}
	var ticks int64
	for _, v := range fields {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// postgresCPU is the CPU time so far of every process on this machine
// named postgres: the server, its backends and workers, and (through the
// server's cutime and cstime) those that have exited. It counts every
// database on the server, not only the benchmark's. 0 when PostgreSQL runs
// elsewhere.
func postgresCPU() time.Duration {
	dirs, _ := os.ReadDir("/proc")
	var sum time.Duration
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			sum += procStat(pid, true)
		}
	}
	return sum
}

// peakRSS reads the authd process's peak resident set (VmHWM).
func (s *server) peakRSS() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// prepare inserts verified users (one bcrypt hash at the default cost,
// shared) and signs their access tokens; refresh token chains are made per
// concurrency level by resetRefresh.
func (s *server) prepare(ctx context.Context, maxConc int) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPassword), 12)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	bulk := make([]*ent.UserCreate, benchUsers)
	for i := range bulk {
		email := fmt.Sprintf("user%d@bench.example.com", i)
		bulk[i] = s.db.Ent.User.Create().SetUsername(fmt.Sprintf("user%d", i)).SetEmail(email).SetEmailNormalized(email).
			SetPasswordHash(string(hash)).SetIsVerified(true).SetVerifiedAt(now).SetCreatedAt(now).SetUpdatedAt(now)
	}
	users, err := s.db.Ent.User.CreateBulk(bulk...).Save(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		access, _, err := s.issuer.Sign(token.Subject{UserID: u.ID, Email: u.Email, Username: u.Username})
		if err != nil {
			return err
		}
		s.users = append(s.users, benchUser{ID: u.ID, Email: u.Email, Access: access})
	}
	s.refresh = make([]atomic.Pointer[string], maxConc)
	s.raw = make([]atomic.Pointer[string], maxConc)
	s.rawOne = make([]atomic.Pointer[string], maxConc)
	return s.resetRefresh(ctx, maxConc)
}

// resetRefresh gives each of conc workers a fresh token family with one
// unused refresh token, for the service and for each direct SQL ceiling.
func (s *server) resetRefresh(ctx context.Context, conc int) error {
	now := time.Now().UTC()
	for _, chains := range [][]atomic.Pointer[string]{s.refresh, s.raw, s.rawOne} {
		for w := range conc {
			u := s.users[w%len(s.users)]
			fam, err := s.db.Ent.TokenFamily.Create().SetUserID(u.ID).SetCreatedAt(now).Save(ctx)
			if err != nil {
				return err
			}
			text, hash, err := token.NewRefreshToken()
			if err != nil {
				return err
			}
			if err := s.db.Ent.RefreshToken.Create().SetUserID(u.ID).SetFamilyID(fam.ID).SetTokenHash(hash).
				SetCreatedAt(now).SetExpiresAt(now.Add(30 * 24 * time.Hour)).Exec(ctx); err != nil {
				return err
			}
			chains[w].Store(&text)
		}
	}
	return nil
}

// backOff honours a RESOURCE_EXHAUSTED answer's google.rpc.RetryInfo as a
// well-behaved client (the gateway's users) would, by waiting that long
// before the worker's next call, and returns err.
func backOff(ctx context.Context, err error) error {
	if status.Code(err) != codes.ResourceExhausted {
		return err
	}
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			select {
			case <-time.After(ri.GetRetryDelay().AsDuration()):
			case <-ctx.Done():
			}
		}
	}
	return err
}

type scenario struct {
	name    string
	fn      call
	hashing bool // bcrypt-bound: runs at least 8 s
	// ceilings are measured in turns with fn (see alternate).
	ceilings []ceiling
}

// ceiling is a call a scenario is measured against.
type ceiling struct {
	name string
	fn   call
}

func (s *server) pick() benchUser { return s.users[rand.IntN(len(s.users))] }

// scenarios are the measured calls; the first two are the cheap RPCs and
// the fourth is Login, as benchBackend expects.
func (s *server) scenarios() []scenario {
	validate := func(ctx context.Context, w int) error {
		r, err := s.client(w).ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: s.pick().Access})
		if err == nil && !r.GetValid() {
			err = fmt.Errorf("token not valid")
		}
		return err
	}
	getMe := func(ctx context.Context, w int) error {
		_, err := s.client(w).GetMe(ctx, &authpb.GetMeRequest{UserId: s.pick().ID.String()})
		return err
	}
	byEmail := func(ctx context.Context, w int) error {
		_, err := s.client(w).GetUserByEmail(ctx, &authpb.GetUserByEmailRequest{Email: s.pick().Email})
		return err
	}
	login := func(ctx context.Context, w int) error {
		_, err := s.client(w).Login(ctx, &authpb.LoginRequest{Email: s.pick().Email, Password: benchPassword})
		return backOff(ctx, err)
	}
	refresh := func(ctx context.Context, w int) error {
		// Not cut off at the deadline: a rotation cancelled after the
		// server committed it would leave the worker without its token.
		ctx = context.WithoutCancel(ctx)
		cur := s.refresh[w].Load()
		r, err := s.client(w).RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: *cur})
		if err != nil {
			return err
		}
		next := r.GetRefreshToken()
		s.refresh[w].Store(&next)
		return nil
	}
	register := func(ctx context.Context, w int) error {
		n := s.regSeq.Add(1)
		_, err := s.client(w).Register(ctx, &authpb.RegisterRequest{Username: "new",
			Email: fmt.Sprintf("new%d@bench.example.com", n), Password: benchPassword})
		return backOff(ctx, err)
	}
	mix := func(ctx context.Context, w int) error {
		switch p := rand.IntN(100); {
		case p < 45:
			return validate(ctx, w)
		case p < 85:
			return getMe(ctx, w)
		case p < 95:
			return refresh(ctx, w)
		case p < 98:
			return login(ctx, w)
		default:
			return register(ctx, w)
		}
	}
	health := func(ctx context.Context, w int) error {
		_, err := s.health[w%len(s.health)].Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	return []scenario{
		{name: "ValidateToken", fn: validate, ceilings: []ceiling{{name: ceilHealth, fn: health}}},
		{name: "GetMe", fn: getMe, ceilings: []ceiling{{name: ceilGetMe, fn: s.rawGetMe}}},
		{name: "GetUserByEmail", fn: byEmail, ceilings: []ceiling{{name: ceilByEmail, fn: s.rawByEmail}}},
		{name: "Login", fn: login, hashing: true},
		{name: "RefreshTokens", fn: refresh, ceilings: []ceiling{{name: ceilFullPath, fn: s.rawRefresh},
			{name: ceilOneStmt, fn: s.rawFresh}}},
		{name: "Register", fn: register, hashing: true},
		{name: "Mix (gateway-shaped)", fn: mix},
	}
}
