package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/placebrain/auth/proto/authpb"
)

// callTimeout bounds each call of the load, as a gateway's deadline would.
const callTimeout = 15 * time.Second

// event is one finished call.
type event struct {
	method     string
	start, end time.Time
	code       codes.Code
	db         bool // the RPC needs the database (ValidateToken does not)
}

// recorder collects the calls of a scenario.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// byCode counts calls by gRPC code.
func byCode(evs []event) map[codes.Code]int {
	m := map[codes.Code]int{}
	for _, e := range evs {
		m[e.code]++
	}
	return m
}

// formatCodes writes counts as "OK 120, UNAVAILABLE 3, INTERNAL 0": OK,
// UNAVAILABLE and INTERNAL always, then the others that occurred.
func formatCodes(m map[codes.Code]int) string {
	parts := []string{fmt.Sprintf("OK %d", m[codes.OK]), fmt.Sprintf("UNAVAILABLE %d", m[codes.Unavailable]),
		fmt.Sprintf("INTERNAL %d", m[codes.Internal])}
	var rest []codes.Code
	for c := range m {
		if c != codes.OK && c != codes.Unavailable && c != codes.Internal {
			rest = append(rest, c)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i] < rest[j] })
	for _, c := range rest {
		parts = append(parts, fmt.Sprintf("%s %d", strings.ToUpper(strings.ReplaceAll(c.String(), " ", "_")), m[c]))
	}
	return strings.Join(parts, ", ")
}

// firstSuccessAfter is how long after t the first database-backed call
// succeeded (its completion), or -1 if none did.
func firstSuccessAfter(evs []event, t time.Time) time.Duration {
	best := time.Duration(-1)
	for _, e := range evs {
		if e.db && e.code == codes.OK && !e.end.Before(t) {
			if d := e.end.Sub(t); best < 0 || d < best {
				best = d
			}
		}
	}
	return best
}

// maxLatency is the longest call that started in [from, to).
func maxLatency(evs []event, from, to time.Time) time.Duration {
	var m time.Duration
	for _, e := range evs {
		if !e.start.Before(from) && e.start.Before(to) {
			m = max(m, e.end.Sub(e.start))
		}
	}
	return m
}

// p99 is the 99th percentile latency of the given calls.
func p99(evs []event) time.Duration {
	h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for _, e := range evs {
		_ = h.RecordValue(e.end.Sub(e.start).Microseconds())
	}
	return time.Duration(h.ValueAtQuantile(99)) * time.Microsecond
}

// load runs gateway-shaped user journeys against a set of authd instances:
// Register, SendOtp (the gateway calls it after Register and ignores its
// failure), the code from the e-mail at the SMTP server, VerifyOtp, Login,
// then rounds of GetMe, ValidateToken and RefreshTokens. A failed step is
// retried with the same request after 50 ms, as a client would, so a
// rotation whose answer was lost is retried with the same token.
type load struct {
	h       *harness
	rec     *recorder
	targets func() []string // the addresses of the instances callers may use now
	seq     atomic.Int64
	prefix  string

	journeys, noMail atomic.Int64

	// sessions are the signed-in users the steady callers use; a session
	// is taken out while one caller rotates it.
	smu      sync.Mutex
	sessions []*session
}

// session is a signed-in user.
type session struct {
	userID, access, refresh string
}

var codeRE = regexp.MustCompile(`\b\d{6}\b`)

func newLoad(h *harness, targets func() []string) *load {
	return &load{h: h, rec: &recorder{}, targets: targets, prefix: strings.ReplaceAll(h.name, "-", "")}
}

// run runs workers until ctx ends: half of them run journeys, the other
// half the steady traffic of signed-in users the journeys leave (the
// gateway's: 45% ValidateToken, 40% GetMe, 15% RefreshTokens).
func (l *load) run(ctx context.Context, workers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if w%2 == 0 {
					l.journey(ctx, w)
				} else {
					l.steady(ctx)
				}
			}
		}()
	}
	return &wg
}

// take removes a random session from the pool (nil if it is empty).
func (l *load) take() *session {
	l.smu.Lock()
	defer l.smu.Unlock()
	if len(l.sessions) == 0 {
		return nil
	}
	i := rand.IntN(len(l.sessions))
	s := l.sessions[i]
	l.sessions[i] = l.sessions[len(l.sessions)-1]
	l.sessions = l.sessions[:len(l.sessions)-1]
	return s
}

func (l *load) put(s *session) {
	l.smu.Lock()
	l.sessions = append(l.sessions, s)
	l.smu.Unlock()
}

// steady makes one call for a signed-in user.
func (l *load) steady(ctx context.Context) {
	s := l.take()
	if s == nil {
		sleep(ctx, 20*time.Millisecond)
		return
	}
	defer l.put(s)
	switch p := rand.IntN(100); {
	case p < 45:
		l.do(ctx, "ValidateToken", false, func(ctx context.Context, c authpb.AuthServiceClient) error {
			_, err := c.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: s.access})
			return err
		})
	case p < 85:
		l.do(ctx, "GetMe", true, func(ctx context.Context, c authpb.AuthServiceClient) error {
			_, err := c.GetMe(ctx, &authpb.GetMeRequest{UserId: s.userID})
			return err
		})
	default:
		l.do(ctx, "RefreshTokens", true, func(ctx context.Context, c authpb.AuthServiceClient) error {
			r, err := c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: s.refresh})
			if err == nil {
				s.access, s.refresh = r.GetAccessToken(), r.GetRefreshToken()
			}
			return err
		})
	}
}

// pick returns an instance to call: any live one.
func (l *load) pick() authpb.AuthServiceClient {
	ts := l.targets()
	return clientFor(ts[rand.IntN(len(ts))])
}

// do calls fn until it succeeds or ctx ends; it reports whether it
// succeeded.
func (l *load) do(ctx context.Context, method string, db bool, fn func(ctx context.Context, c authpb.AuthServiceClient) error) bool {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		start := time.Now()
		err := fn(cctx, l.pick())
		cancel()
		l.rec.add(event{method: method, start: start, end: time.Now(), code: status.Code(err), db: db})
		if err == nil {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

func (l *load) journey(ctx context.Context, w int) {
	n := l.seq.Add(1)
	email := fmt.Sprintf("%s-%d-%d@faults.example.com", l.prefix, w, n)
	var userID string
	if !l.do(ctx, "Register", true, func(ctx context.Context, c authpb.AuthServiceClient) error {
		r, err := c.Register(ctx, &authpb.RegisterRequest{Username: "faults", Email: email, Password: faultPassword})
		userID = r.GetUserId()
		return err
	}) {
		return
	}
	l.do(ctx, "SendOtp", true, func(ctx context.Context, c authpb.AuthServiceClient) error {
		_, err := c.SendOtp(ctx, &authpb.SendOtpRequest{Email: email})
		return err
	})
	code := l.waitCode(ctx, email, 10*time.Second)
	if code == "" {
		l.noMail.Add(1)
		return
	}
	if !l.do(ctx, "VerifyOtp", true, func(ctx context.Context, c authpb.AuthServiceClient) error {
		_, err := c.VerifyOtp(ctx, &authpb.VerifyOtpRequest{Email: email, Code: code})
		return err
	}) {
		return
	}
	var access, refresh string
	if !l.do(ctx, "Login", true, func(ctx context.Context, c authpb.AuthServiceClient) error {
		r, err := c.Login(ctx, &authpb.LoginRequest{Email: email, Password: faultPassword})
		access, refresh = r.GetAccessToken(), r.GetRefreshToken()
		return err
	}) {
		return
	}
	for range 3 {
		l.do(ctx, "GetMe", true, func(ctx context.Context, c authpb.AuthServiceClient) error {
			_, err := c.GetMe(ctx, &authpb.GetMeRequest{UserId: userID})
			return err
		})
		l.do(ctx, "ValidateToken", false, func(ctx context.Context, c authpb.AuthServiceClient) error {
			_, err := c.ValidateToken(ctx, &authpb.ValidateTokenRequest{AccessToken: access})
			return err
		})
		if !l.do(ctx, "RefreshTokens", true, func(ctx context.Context, c authpb.AuthServiceClient) error {
			r, err := c.RefreshTokens(ctx, &authpb.RefreshTokensRequest{RefreshToken: refresh})
			if err == nil {
				access, refresh = r.GetAccessToken(), r.GetRefreshToken()
			}
			return err
		}) {
			return
		}
	}
	l.journeys.Add(1)
	l.put(&session{userID: userID, access: access, refresh: refresh})
}

// waitCode waits for the newest e-mail to addr and returns its code.
func (l *load) waitCode(ctx context.Context, addr string, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		msgs := l.h.messages()
		for i := len(msgs) - 1; i >= 0; i-- {
			if len(msgs[i].To) > 0 && msgs[i].To[0] == addr {
				if c := codeRE.FindString(string(msgs[i].Email.Text)); c != "" {
					return c
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ""
}

// sample is one health poll.
type sample struct {
	at      time.Time
	serving bool
}

// pollHealth checks grpc.health.v1 every 50 ms until ctx ends (a failed
// check counts as not serving).
func pollHealth(ctx context.Context, hc healthpb.HealthClient) func() []sample {
	var (
		mu  sync.Mutex
		out []sample
	)
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cctx, cancel := context.WithTimeout(ctx, 45*time.Millisecond)
			r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
			cancel()
			mu.Lock()
			out = append(out, sample{at: time.Now(), serving: err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING})
			mu.Unlock()
		}
	}()
	return func() []sample {
		mu.Lock()
		defer mu.Unlock()
		return append([]sample(nil), out...)
	}
}

// healthWrong measures how long health was wrong around an outage from
// down to up: servingWhileDown is from down until the first NOT_SERVING
// sample (all of the outage if none); notServingWhileUp is from the first
// database-backed success after up until the first SERVING sample after
// it (-1 when nothing succeeded).
func healthWrong(ss []sample, down, up, firstOK time.Time) (servingWhileDown, notServingWhileUp time.Duration) {
	servingWhileDown = up.Sub(down)
	for _, s := range ss {
		if !s.at.Before(down) && s.at.Before(up) && !s.serving {
			servingWhileDown = s.at.Sub(down)
			break
		}
	}
	if firstOK.IsZero() {
		return servingWhileDown, -1
	}
	notServingWhileUp = -1
	for _, s := range ss {
		if !s.at.Before(firstOK) && s.serving {
			notServingWhileUp = s.at.Sub(firstOK)
			break
		}
	}
	// Health serving again before the first success is right.
	for i := len(ss) - 1; i >= 0; i-- {
		if ss[i].at.Before(firstOK) && !ss[i].at.Before(up) {
			if ss[i].serving {
				notServingWhileUp = 0
			}
			break
		}
	}
	return servingWhileDown, notServingWhileUp
}
